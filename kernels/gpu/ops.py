"""Guarded entry points to the Triton kernels: they import Triton on first call and say clearly what is
missing, so ``swarmkeep.kernels`` imports on machines without Triton or CUDA."""

from __future__ import annotations

import os

import torch

from ..format import Int4Weight
from ..moe_weights import MoEWeights
from ..reference import check_activation
from ..routing import RoutingConfig, route
from .layout import TritonInt4, to_triton_layout


def _require_triton(x: torch.Tensor) -> None:
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("the Triton kernels need the 'triton' package (pip install triton)") from exc
    if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the Triton kernels need a CUDA tensor, or TRITON_INTERPRET=1 to run on the CPU")


def triton_w4a16_linear(x: torch.Tensor, weight: TritonInt4, config: dict[str, int] | None = None) -> torch.Tensor:
    """bf16 ``x`` [M, K] @ INT4 weight (Triton layout) -> bf16 [M, N]."""
    check_activation(x, weight.in_features)
    if weight.codes.dim() != 2:
        raise ValueError("weight must be a single matrix in the Triton layout (codes [K/8, N])")
    _require_triton(x)
    from .w4a16_gemm import w4a16_gemm

    return w4a16_gemm(x.contiguous(), weight, config)


class TritonW4A16MoE:
    """A Kimi-style MoE layer on the Triton kernels: INT4 routed experts, bf16 router and shared expert."""

    def __init__(self, moe: MoEWeights, config: RoutingConfig, device: torch.device | str = "cuda") -> None:
        self.moe = moe
        self.config = config
        gate_up = [
            Int4Weight(torch.cat([g.packed, u.packed]), torch.cat([g.scale, u.scale]))
            for g, u in zip(moe.gate, moe.up, strict=True)
        ]
        self.w13 = to_triton_layout(gate_up).to(device)
        self.w2 = to_triton_layout(moe.down).to(device)

    def routed(
        self,
        x: torch.Tensor,
        ids: torch.Tensor,
        weights: torch.Tensor,
        block_config: dict[str, int] | None = None,
    ) -> torch.Tensor:
        """The routed experts' weighted sum, fp32 [T, hidden], for a given routing."""
        check_activation(x, self.moe.hidden_size)
        _require_triton(x)
        from .fused_moe import fused_moe

        return fused_moe(x.contiguous(), self.w13, self.w2, ids, weights, block_config)

    def __call__(self, x: torch.Tensor, block_config: dict[str, int] | None = None) -> torch.Tensor:
        """The MoE layer's bf16 output."""
        router = self.moe.router.to(x.device)
        bias = None if self.moe.correction_bias is None else self.moe.correction_bias.to(x.device)
        ids, weights = route(x, router, self.config, bias)
        out = self.routed(x, ids, weights, block_config)
        if self.moe.shared is not None:
            out = out + self.moe.shared(x).float()
        return out.to(torch.bfloat16)
