"""The CPU fused MoE forward: route, group tokens by expert, run gate/up and down through the W4A16 tiles
(one C++ call for all routed experts), combine, and add the bf16 shared expert."""

from __future__ import annotations

import torch

from ..format import Int4Weight
from ..moe_weights import MoEWeights
from ..reference import check_activation, moe_combine_ref
from ..routing import RoutingConfig, route
from .dispatch import CpuPath, available_paths, heuristic_path, num_threads, resolve
from .extension import extension
from .layout import stack_experts


def _gate_up(gate: Int4Weight, up: Int4Weight) -> Int4Weight:
    # One [2I, H] matrix per expert: a tile of gate rows and the matching tile of up rows meet in one chunk.
    return Int4Weight(torch.cat([gate.packed, up.packed]), torch.cat([gate.scale, up.scale]))


def moe_path(path: CpuPath | None, busiest: int, hidden: int, inter: int, threads: int | None) -> CpuPath:
    """The path of a fused MoE call whose busiest expert has ``busiest`` rows: the one the linear's dispatcher
    measured fastest on the gate/up shape [2I, H]. torch's int4 op has no fused MoE form, so where it wins (or is
    forced) the fastest C++ path by feature bits runs instead."""
    chosen = resolve(path, busiest, (2 * inter, hidden), threads)
    if chosen == CpuPath.TORCH_INT4:
        fallback = heuristic_path(max(busiest, 1))
        chosen = fallback if fallback in available_paths() and fallback != CpuPath.TORCH_INT4 else CpuPath.TORCH
    return chosen


class CpuW4A16MoE:
    """A Kimi-style MoE layer (INT4 routed SwiGLU experts, bf16 shared expert) run by the CPU kernels."""

    def __init__(self, moe: MoEWeights, config: RoutingConfig) -> None:
        if moe.intermediate_size % 32:
            raise ValueError(f"intermediate size {moe.intermediate_size} must be a multiple of 32")
        self.moe = moe
        self.config = config
        self.w13, self.s13 = stack_experts([_gate_up(g, u) for g, u in zip(moe.gate, moe.up, strict=True)])
        self.w2, self.s2 = stack_experts(moe.down)

    def routed(
        self,
        x: torch.Tensor,
        ids: torch.Tensor,
        weights: torch.Tensor,
        path: CpuPath | None = None,
        threads: int | None = None,
    ) -> torch.Tensor:
        """The routed experts' weighted sum, fp32 [T, hidden], for a given routing."""
        check_activation(x, self.moe.hidden_size)
        if ids.shape != weights.shape or ids.dim() != 2 or ids.shape[0] != x.shape[0]:
            raise ValueError(
                f"ids {tuple(ids.shape)} and weights {tuple(weights.shape)} must both be [{x.shape[0]}, top_k]"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.moe.num_experts):
            raise ValueError(f"expert ids must lie in [0, {self.moe.num_experts})")
        busiest = int(torch.bincount(ids.flatten()).max()) if ids.numel() else 0
        chosen = moe_path(path, busiest, self.moe.hidden_size, self.moe.intermediate_size, threads)
        if chosen == CpuPath.TORCH:
            return moe_combine_ref(x, self.moe, ids, weights.float())
        ext = extension()
        assert ext is not None
        return ext.moe_forward(
            x.contiguous(),
            ids.to(torch.int64).contiguous(),
            weights.float().contiguous(),
            self.w13,
            self.s13,
            self.w2,
            self.s2,
            int(chosen),
            num_threads(threads),
        )

    def __call__(self, x: torch.Tensor, path: CpuPath | None = None, threads: int | None = None) -> torch.Tensor:
        """The MoE layer's bf16 output for bf16 ``x`` [T, hidden]."""
        check_activation(x, self.moe.hidden_size)
        ids, weights = route(x, self.moe.router, self.config, self.moe.correction_bias)
        out = self.routed(x, ids, weights, path, threads)
        if self.moe.shared is not None:
            out = out + self.moe.shared(x).float()
        return out.to(torch.bfloat16)
