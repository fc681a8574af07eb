"""The blocked layout the CPU kernels read, converted once at load time from the checkpoint format.

Rows are grouped in tiles of 16: codes int32 [N/16, K/8, 16] and scales bf16 [N/16, K/32, 16]. Word
(tile, c, i) is exactly the checkpoint's word (16 * tile + i, c), so a tile streams contiguously and one
64-byte load feeds 16 output features. N is padded to a multiple of 16 with zero-scale rows. Blocked weights live
in 2 MiB pages (huge_pages.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..format import GROUP_SIZE, PACK_FACTOR, Int4Weight, unpack_int4
from .huge_pages import empty_huge, in_huge_pages

TILE_N = 16


@dataclass(frozen=True)
class BlockedInt4:
    """An INT4 weight in the CPU kernels' blocked layout; ``out_features`` excludes the padding rows."""

    codes: torch.Tensor  # int32 [N_pad / 16, K / 8, 16]
    scales: torch.Tensor  # bf16 [N_pad / 16, K / 32, 16]
    out_features: int
    # torch's int4 layout of the same weight, built the first time its op runs this weight (TORCH_INT4 path).
    torch_int4: dict[str, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    @property
    def in_features(self) -> int:
        """K, the input size."""
        return int(self.codes.shape[1]) * PACK_FACTOR

    @property
    def nbytes(self) -> int:
        """Bytes of codes and scales a forward streams (padding included)."""
        return self.codes.numel() * 4 + self.scales.numel() * 2


def _tiled(weight: Int4Weight) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of the weight's codes and scales regrouped into 16-row tiles (padded to whole tiles)."""
    n, words = weight.packed.shape
    groups = weight.scale.shape[1]
    n_pad = -(-n // TILE_N) * TILE_N
    packed, scale = weight.packed, weight.scale
    if n_pad != n:
        # Code 8 with scale 0 is an exact zero row; the kernels never write it out.
        packed = torch.cat([packed, torch.full((n_pad - n, words), 0x88888888 - 2**32, dtype=torch.int32)])
        scale = torch.cat([scale, torch.zeros(n_pad - n, groups, dtype=torch.bfloat16)])
    codes = packed.reshape(n_pad // TILE_N, TILE_N, words).transpose(1, 2)
    return codes, scale.reshape(n_pad // TILE_N, TILE_N, groups).transpose(1, 2)


def to_blocked(weight: Int4Weight) -> BlockedInt4:
    """Regroup a checkpoint-format weight into 16-row tiles (a copy; done once at load)."""
    codes, scales = _tiled(weight)
    return BlockedInt4(in_huge_pages(codes), in_huge_pages(scales), int(weight.packed.shape[0]))


def from_blocked(blocked: BlockedInt4) -> Int4Weight:
    """Back to the checkpoint format (drops the padding rows)."""
    tiles, words, _ = blocked.codes.shape
    groups = blocked.scales.shape[1]
    packed = blocked.codes.transpose(1, 2).reshape(tiles * TILE_N, words)[: blocked.out_features]
    scale = blocked.scales.transpose(1, 2).reshape(tiles * TILE_N, groups)[: blocked.out_features]
    return Int4Weight(packed.contiguous(), scale.contiguous())


def stack_experts(weights: list[Int4Weight]) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocked codes and scales of same-shape expert weights stacked on a leading expert axis."""
    if not weights:
        raise ValueError("need at least one expert weight")
    shape = weights[0].shape
    if any(w.shape != shape for w in weights):
        raise ValueError(f"all expert weights must share one shape, the first is {shape}")
    if shape[0] % TILE_N or shape[1] % GROUP_SIZE:
        raise ValueError(f"expert weights must have a multiple of {TILE_N} rows, got {shape}")
    # Tiled views, copied once: straight into the stacked tensors, which live in 2 MiB pages.
    tiled = [_tiled(w) for w in weights]
    codes = empty_huge((len(tiled), *tiled[0][0].shape), torch.int32)
    scales = empty_huge((len(tiled), *tiled[0][1].shape), torch.bfloat16)
    return torch.stack([c for c, _ in tiled], out=codes), torch.stack([s for _, s in tiled], out=scales)


def torch_int4_layout(blocked: BlockedInt4) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight packed for ``torch.ops.aten._weight_int4pack_mm_for_cpu`` (codes, scales-and-zeros
    [K/32, N, 2]); built once per weight and kept beside it. torch's dequantization is ``(u - 8) * s + z``, the
    Kimi format's with zero ``z = 0``."""
    if not blocked.torch_int4:
        # Padding rows included: torch's op wants N in multiples of 16; callers drop the padded outputs.
        tiles, words, _ = blocked.codes.shape
        packed = blocked.codes.transpose(1, 2).reshape(tiles * TILE_N, words)
        u = (unpack_int4(packed).to(torch.int32) + 8).contiguous()
        codes = torch.ops.aten._convert_weight_to_int4pack_for_cpu(u, 1)
        scale = blocked.scales.transpose(1, 2).reshape(tiles * TILE_N, -1).t().contiguous()
        blocked.torch_int4["codes"] = codes
        blocked.torch_int4["scales_zeros"] = torch.stack([scale, torch.zeros_like(scale)], dim=2).contiguous()
    return blocked.torch_int4["codes"], blocked.torch_int4["scales_zeros"]
