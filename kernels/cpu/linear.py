"""The CPU W4A16 linear: repack once at load, then a small forward on the path the dispatcher measured fastest for
the weight's shape and M."""

from __future__ import annotations

import torch

from ..format import Int4Weight
from ..reference import check_activation, w4a16_linear_ref
from .dispatch import CpuPath, num_threads, resolve
from .extension import extension
from .layout import BlockedInt4, from_blocked, to_blocked, torch_int4_layout


def w4a16_linear(
    x: torch.Tensor,
    weight: BlockedInt4,
    bias: torch.Tensor | None = None,
    path: CpuPath | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """``x @ W.T (+ bias)`` for bf16 ``x`` [M, K] and a blocked INT4 weight; bf16 [M, N]."""
    check_activation(x, weight.in_features)
    chosen = resolve(path, x.shape[0], (weight.out_features, weight.in_features), threads)
    if chosen == CpuPath.TORCH:
        return w4a16_linear_ref(x, from_blocked(weight), bias)
    if chosen == CpuPath.TORCH_INT4:
        if x.shape[0] == 0:
            return x.new_empty(0, weight.out_features)
        codes, scales_zeros = torch_int4_layout(weight)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.contiguous(), codes, 32, scales_zeros)
        y = y[:, : weight.out_features].contiguous() if y.shape[1] != weight.out_features else y
    else:
        ext = extension()
        assert ext is not None  # resolve() only offers C++ paths when the extension loaded
        y = ext.w4a16_linear(x, weight.codes, weight.scales, weight.out_features, int(chosen), num_threads(threads))
    if bias is not None:
        y = (y.float() + bias.float()).to(torch.bfloat16)
    return y


class CpuW4A16Linear(torch.nn.Module):
    """A linear layer over an INT4 weight in the Kimi format, run by the CPU kernels."""

    def __init__(self, weight: Int4Weight, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = to_blocked(weight)
        self.bias = bias

    @property
    def in_features(self) -> int:
        """Input size K."""
        return self.weight.in_features

    @property
    def out_features(self) -> int:
        """Output size N."""
        return self.weight.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """bf16 [..., K] -> bf16 [..., N]."""
        lead = x.shape[:-1]
        y = w4a16_linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return y.reshape(*lead, self.out_features)
