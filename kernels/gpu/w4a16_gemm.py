"""Triton W4A16 GEMM over the INT4 format: nibbles unpacked in registers, group scales applied to the
dequantized bf16 tile, fp32 accumulation, optional split-K (fp32 atomics) so decode shapes fill the GPU.

Imports Triton at module import: reach it through :mod:`swarmkeep.kernels.gpu.ops`, which guards it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .configs import block_config
from .layout import TritonInt4


@triton.jit
def dequant_tile(w_ptrs, s_ptrs, mask_w, mask_s, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """[BLOCK_K, BLOCK_N] bf16 weights from BLOCK_K/8 rows of packed words and BLOCK_K/32 rows of scales."""
    words = tl.load(w_ptrs, mask=mask_w, other=0)  # int32 [BLOCK_K // 8, BLOCK_N]
    shifts = tl.arange(0, 8) * 4
    # Arithmetic shifts drag the sign bit along; the mask keeps only the nibble.
    codes = (words[:, None, :] >> shifts[None, :, None]) & 0xF  # [BLOCK_K // 8, 8, BLOCK_N]
    codes = tl.reshape(codes, (BLOCK_K, BLOCK_N))
    scales = tl.load(s_ptrs, mask=mask_s, other=0.0).to(tl.float32)  # [BLOCK_K // 32, BLOCK_N]
    scales = tl.reshape(tl.broadcast_to(scales[:, None, :], (BLOCK_K // 32, 32, BLOCK_N)), (BLOCK_K, BLOCK_N))
    return ((codes - 8).to(tl.float32) * scales).to(tl.bfloat16)


@triton.jit
def w4a16_gemm_kernel(
    x_ptr,
    w_ptr,
    s_ptr,
    y_ptr,
    M,
    N,
    K,
    stride_xm,
    stride_wk,
    stride_sk,
    stride_ym,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
    DOT_FP32: tl.constexpr,
):
    """y[M, N] = x[M, K] @ W; W in the Triton layout (codes [K/8, N], scales [K/32, N])."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    rkw = tl.arange(0, BLOCK_K // 8)
    rkg = tl.arange(0, BLOCK_K // 32)
    acc = tl.full(
        (BLOCK_M, BLOCK_N), 0.0, tl.float32
    )  # tl.zeros is a library @jit: it breaks the interpreter when Triton was imported first
    for k0 in range(pid_k * BLOCK_K, K, BLOCK_K * SPLIT_K):
        kk = k0 + rk
        x = tl.load(
            x_ptr + rm[:, None] * stride_xm + kk[None, :],
            mask=(rm[:, None] < M) & (kk[None, :] < K),
            other=0.0,
        )
        kw = k0 // 8 + rkw
        kg = k0 // 32 + rkg
        w = dequant_tile(
            w_ptr + kw[:, None] * stride_wk + rn[None, :],
            s_ptr + kg[:, None] * stride_sk + rn[None, :],
            (kw[:, None] < K // 8) & (rn[None, :] < N),
            (kg[:, None] < K // 32) & (rn[None, :] < N),
            BLOCK_K,
            BLOCK_N,
        )
        if DOT_FP32:
            acc += tl.dot(x.to(tl.float32), w.to(tl.float32))
        else:
            acc += tl.dot(x, w)
    y_ptrs = y_ptr + rm[:, None] * stride_ym + rn[None, :]
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    if SPLIT_K == 1:
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        tl.atomic_add(y_ptrs, acc, mask=mask)


def w4a16_gemm(x: torch.Tensor, weight: TritonInt4, config: dict[str, int] | None = None) -> torch.Tensor:
    """bf16 ``x`` [M, K] @ INT4 ``weight`` -> bf16 [M, N] with the Triton kernel (GPU or interpreter)."""
    m, k = x.shape
    n = weight.out_features
    cfg = config or block_config("triton_w4a16", _device_name(x), n, k, m)
    split_k = int(cfg.get("SPLIT_K", 1))
    out = torch.zeros((m, n), dtype=torch.float32 if split_k > 1 else torch.bfloat16, device=x.device)
    grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(n, cfg["BLOCK_N"]), split_k)
    w4a16_gemm_kernel[grid](
        x,
        weight.codes,
        weight.scales,
        out,
        m,
        n,
        k,
        x.stride(0),
        weight.codes.stride(0),
        weight.scales.stride(0),
        out.stride(0),
        BLOCK_M=cfg["BLOCK_M"],
        BLOCK_N=cfg["BLOCK_N"],
        BLOCK_K=cfg["BLOCK_K"],
        SPLIT_K=split_k,
        DOT_FP32=dot_in_fp32(x),
        num_warps=cfg.get("num_warps", 4),
        num_stages=cfg.get("num_stages", 3),
    )
    return out.to(torch.bfloat16)


def dot_in_fp32(x: torch.Tensor) -> bool:
    """Whether tl.dot needs fp32 operands: the CPU interpreter multiplies bf16 operands as raw bits."""
    return not x.is_cuda


def _device_name(x: torch.Tensor) -> str:
    return torch.cuda.get_device_name(x.device) if x.is_cuda else "cpu"
