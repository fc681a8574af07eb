"""The layout the Triton kernels read: the checkpoint's tensors transposed so that N is contiguous.

codes int32 [K/8, N] (word (kw, n) = checkpoint word (n, kw)) and scales bf16 [K/32, N]: a program's loads
of a [BLOCK_K, BLOCK_N] block are coalesced along N. Experts stack on a leading axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..format import PACK_FACTOR, Int4Weight


@dataclass(frozen=True)
class TritonInt4:
    """An INT4 weight (or a stack of expert weights) in the Triton layout."""

    codes: torch.Tensor  # int32 [(E,) K/8, N]
    scales: torch.Tensor  # bf16 [(E,) K/32, N]

    @property
    def in_features(self) -> int:
        """K, the input size."""
        return int(self.codes.shape[-2]) * PACK_FACTOR

    @property
    def out_features(self) -> int:
        """N, the output size."""
        return int(self.codes.shape[-1])

    def to(self, device: torch.device | str) -> TritonInt4:
        """The same weight on ``device``."""
        return TritonInt4(self.codes.to(device), self.scales.to(device))


def to_triton_layout(weights: Int4Weight | list[Int4Weight]) -> TritonInt4:
    """One weight, or same-shape expert weights stacked, in the Triton layout (a copy; done once at load)."""
    if isinstance(weights, Int4Weight):
        return TritonInt4(weights.packed.t().contiguous(), weights.scale.t().contiguous())
    if not weights or any(w.shape != weights[0].shape for w in weights):
        raise ValueError("expert weights must be a non-empty list of one shape")
    return TritonInt4(
        torch.stack([w.packed.t() for w in weights]).contiguous(),
        torch.stack([w.scale.t() for w in weights]).contiguous(),
    )


def from_triton_layout(weight: TritonInt4) -> Int4Weight:
    """Back to the checkpoint format (a single weight)."""
    if weight.codes.dim() != 2:
        raise ValueError("from_triton_layout takes a single weight, not an expert stack")
    return Int4Weight(weight.codes.t().contiguous(), weight.scales.t().contiguous())
