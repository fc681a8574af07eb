"""Triton fused MoE over INT4 experts (after vLLM's fused_moe): tokens are sorted by expert into blocks of
BLOCK_M rows, each program multiplies one block by one expert's INT4 weight tile; gate/up then down.

Imports Triton at module import: reach it through :mod:`swarmkeep.kernels.gpu.ops`, which guards it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .configs import block_config
from .layout import TritonInt4
from .w4a16_gemm import _device_name, dequant_tile, dot_in_fp32


@triton.jit
def moe_w4a16_kernel(
    x_ptr,
    w_ptr,
    s_ptr,
    y_ptr,
    sorted_ptr,
    expert_ptr,
    topk_w_ptr,
    num_slots,
    N,
    K,
    stride_xm,
    stride_we,
    stride_wk,
    stride_se,
    stride_sk,
    stride_ym,
    ROWS_PER_X: tl.constexpr,
    MUL_WEIGHT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_FP32: tl.constexpr,
):
    """y[slot] = x[slot // ROWS_PER_X] @ W[expert(block)] (times the slot's routing weight if MUL_WEIGHT)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    slots = tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    valid = slots < num_slots  # padding entries hold num_slots
    expert = tl.load(expert_ptr + pid_m).to(tl.int64)
    rows = slots // ROWS_PER_X
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    rkw = tl.arange(0, BLOCK_K // 8)
    rkg = tl.arange(0, BLOCK_K // 32)
    w_base = w_ptr + expert * stride_we
    s_base = s_ptr + expert * stride_se
    acc = tl.full(
        (BLOCK_M, BLOCK_N), 0.0, tl.float32
    )  # tl.zeros is a library @jit: it breaks the interpreter when Triton was imported first
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        x = tl.load(
            x_ptr + rows[:, None] * stride_xm + kk[None, :],
            mask=valid[:, None] & (kk[None, :] < K),
            other=0.0,
        )
        kw = k0 // 8 + rkw
        kg = k0 // 32 + rkg
        w = dequant_tile(
            w_base + kw[:, None] * stride_wk + rn[None, :],
            s_base + kg[:, None] * stride_sk + rn[None, :],
            (kw[:, None] < K // 8) & (rn[None, :] < N),
            (kg[:, None] < K // 32) & (rn[None, :] < N),
            BLOCK_K,
            BLOCK_N,
        )
        if DOT_FP32:
            acc += tl.dot(x.to(tl.float32), w.to(tl.float32))
        else:
            acc += tl.dot(x, w)
    if MUL_WEIGHT:
        acc = acc * tl.load(topk_w_ptr + slots, mask=valid, other=0.0)[:, None]
    tl.store(
        y_ptr + slots[:, None] * stride_ym + rn[None, :],
        acc.to(y_ptr.dtype.element_ty),
        mask=valid[:, None] & (rn[None, :] < N),
    )


def align_by_expert(ids: torch.Tensor, experts: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slots (token * top_k + k) sorted by expert, each expert's run padded to a multiple of ``block_m`` with
    the sentinel ``ids.numel()``; and the expert of every block. Empty experts get no blocks."""
    flat = ids.flatten()
    slots = flat.numel()
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=experts)
    padded = (counts + block_m - 1) // block_m * block_m
    start_padded = torch.cumsum(padded, 0) - padded
    start_sorted = torch.cumsum(counts, 0) - counts
    expert_of = flat[order]
    rank = torch.arange(slots, device=ids.device) - start_sorted[expert_of]
    total = int(padded.sum())
    sorted_slots = torch.full((total,), slots, dtype=torch.int32, device=ids.device)
    sorted_slots[start_padded[expert_of] + rank] = order.to(torch.int32)
    block_expert = torch.repeat_interleave(torch.arange(experts, device=ids.device), padded // block_m)
    return sorted_slots, block_expert.to(torch.int32)


def _grouped_gemm(
    x: torch.Tensor,
    weight: TritonInt4,
    sorted_slots: torch.Tensor,
    block_expert: torch.Tensor,
    topk_w: torch.Tensor,
    slots: int,
    rows_per_x: int,
    mul_weight: bool,
    out_dtype: torch.dtype,
    cfg: dict[str, int],
) -> torch.Tensor:
    n = weight.out_features
    k = weight.in_features
    y = torch.zeros((slots, n), dtype=out_dtype, device=x.device)
    grid = (block_expert.numel(), triton.cdiv(n, cfg["BLOCK_N"]))
    if block_expert.numel():
        moe_w4a16_kernel[grid](
            x,
            weight.codes,
            weight.scales,
            y,
            sorted_slots,
            block_expert,
            topk_w,
            slots,
            n,
            k,
            x.stride(0),
            weight.codes.stride(0),
            weight.codes.stride(1),
            weight.scales.stride(0),
            weight.scales.stride(1),
            y.stride(0),
            ROWS_PER_X=rows_per_x,
            MUL_WEIGHT=mul_weight,
            BLOCK_M=cfg["BLOCK_M"],
            BLOCK_N=cfg["BLOCK_N"],
            BLOCK_K=cfg["BLOCK_K"],
            DOT_FP32=dot_in_fp32(x),
            num_warps=cfg.get("num_warps", 4),
            num_stages=cfg.get("num_stages", 3),
        )
    return y


def fused_moe(
    x: torch.Tensor,
    w13: TritonInt4,
    w2: TritonInt4,
    ids: torch.Tensor,
    weights: torch.Tensor,
    config: dict[str, int] | None = None,
) -> torch.Tensor:
    """Routed experts for bf16 ``x`` [T, H]: fp32 [T, H] = sum_k weight_k * down(silu(gate) * up).

    ``w13`` stacks each expert's gate rows then up rows ([E, H/8, 2I] codes); ``w2`` is [E, I/8, H].
    """
    tokens, hidden = x.shape
    top_k = ids.shape[1]
    experts = w13.codes.shape[0]
    inter = w13.out_features // 2
    slots = tokens * top_k
    cfg = config or block_config("triton_moe", _device_name(x), w13.out_features, hidden, slots)
    sorted_slots, block_expert = align_by_expert(ids, experts, cfg["BLOCK_M"])
    topk_w = weights.float().flatten().contiguous()
    h = _grouped_gemm(x, w13, sorted_slots, block_expert, topk_w, slots, top_k, False, torch.float32, cfg)
    # The activation is rounded to bf16 before the down projection, as in the reference.
    act = (torch.nn.functional.silu(h[:, :inter]) * h[:, inter:]).to(torch.bfloat16)
    y = _grouped_gemm(act, w2, sorted_slots, block_expert, topk_w, slots, 1, True, torch.float32, cfg)
    return y.view(tokens, top_k, hidden).sum(dim=1)
