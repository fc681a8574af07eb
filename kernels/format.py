"""The Kimi INT4 weight format: compressed-tensors "pack-quantized", W4A16, symmetric, group size 32.

A weight of shape [out, in] is stored as
- ``weight_packed``: int32 [out, in / 8], eight 4-bit codes per word, least significant nibble first,
  along the input dimension; each code is ``u = q + 8`` with ``q`` in [-8, 7];
- ``weight_scale``: bf16 [out, in / 32], one scale per group of 32 inputs;
- ``weight_shape``: int [2], the unpacked shape.

The real weight is ``w = (u - 8) * s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GROUP_SIZE = 32
PACK_FACTOR = 8  # 4-bit codes per int32 word
_Q_MIN, _Q_MAX = -8, 7
_OFFSET = 8
# compressed-tensors divides the absolute maximum by half the code range (15 / 2) for symmetric ints.
_HALF_RANGE = (_Q_MAX - _Q_MIN) / 2
_SHIFTS = torch.arange(PACK_FACTOR, dtype=torch.int32) * 4


@dataclass(frozen=True)
class Int4Weight:
    """One linear weight in the pack-quantized INT4 format (see the module docstring)."""

    packed: torch.Tensor  # int32 [out, in / 8]
    scale: torch.Tensor  # bf16 [out, in / 32]

    def __post_init__(self) -> None:
        check_format(self.packed, self.scale)

    @property
    def out_features(self) -> int:
        """Rows of the unpacked weight (N)."""
        return int(self.packed.shape[0])

    @property
    def in_features(self) -> int:
        """Columns of the unpacked weight (K)."""
        return int(self.packed.shape[1]) * PACK_FACTOR

    @property
    def shape(self) -> tuple[int, int]:
        """The unpacked shape, as ``weight_shape`` records it."""
        return (self.out_features, self.in_features)

    @property
    def nbytes(self) -> int:
        """Bytes a kernel must stream to use this weight once (codes and scales)."""
        return self.packed.numel() * 4 + self.scale.numel() * 2

    def to_compressed_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The checkpoint tensors under compressed-tensors' names, e.g. ``{prefix}weight_packed``."""
        return {
            f"{prefix}weight_packed": self.packed,
            f"{prefix}weight_scale": self.scale,
            f"{prefix}weight_shape": torch.tensor(self.shape, dtype=torch.int64),
        }

    @classmethod
    def from_compressed_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "") -> Int4Weight:
        """Read the three checkpoint tensors written by :meth:`to_compressed_tensors` or a Kimi checkpoint."""
        packed = tensors[f"{prefix}weight_packed"]
        scale = tensors[f"{prefix}weight_scale"]
        shape = tensors.get(f"{prefix}weight_shape")
        weight = cls(packed, scale)
        if shape is not None and tuple(int(v) for v in shape.tolist()) != weight.shape:
            raise ValueError(
                f"weight_shape {tuple(shape.tolist())} does not match weight_packed {tuple(packed.shape)}: "
                "only unpadded weights whose input size is a multiple of 32 are supported"
            )
        return weight


def check_format(packed: torch.Tensor, scale: torch.Tensor) -> None:
    """Raise a clear error unless ``packed``/``scale`` are a valid pair in the INT4 format."""
    if packed.dtype != torch.int32:
        raise TypeError(f"weight_packed must be int32, got {packed.dtype}")
    if scale.dtype != torch.bfloat16:
        raise TypeError(f"weight_scale must be bfloat16, got {scale.dtype}")
    if packed.dim() != 2 or scale.dim() != 2:
        raise ValueError(
            f"weight_packed and weight_scale must be 2-D, got {tuple(packed.shape)} and {tuple(scale.shape)}"
        )
    n, words = packed.shape
    if scale.shape[0] != n or scale.shape[1] * GROUP_SIZE != words * PACK_FACTOR:
        raise ValueError(
            f"weight_scale {tuple(scale.shape)} does not fit weight_packed {tuple(packed.shape)}: "
            f"expected [{n}, {words * PACK_FACTOR // GROUP_SIZE}] (one scale per {GROUP_SIZE} inputs)"
        )
    if words % (GROUP_SIZE // PACK_FACTOR):
        raise ValueError(f"input size {words * PACK_FACTOR} must be a multiple of the group size {GROUP_SIZE}")


def _check_weight(weight: torch.Tensor) -> None:
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got {getattr(weight, 'dtype', type(weight))}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [out, in], got shape {tuple(weight.shape)}")
    if weight.shape[1] % GROUP_SIZE:
        raise ValueError(f"input size {weight.shape[1]} must be a multiple of the group size {GROUP_SIZE}")


def quantize_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest symmetric INT4 quantization; returns codes ``q`` (int8, [-8, 7]) and bf16 scales.

    The scale rule is compressed-tensors': ``absmax / 7.5`` per group, kept in bf16, never zero.
    """
    _check_weight(weight)
    n, k = weight.shape
    groups = weight.reshape(n, k // GROUP_SIZE, GROUP_SIZE)
    amax = groups.abs().amax(dim=2).to(weight.dtype)
    scale = (amax / _HALF_RANGE).to(torch.bfloat16)
    # An all-zero group would divide by zero; any positive scale encodes it as zeros.
    scale = torch.where(scale == 0, torch.finfo(torch.bfloat16).eps, scale)
    # Divide in the weight's own dtype, as compressed-tensors does, so codes match its checkpoints exactly.
    q = torch.round(groups / scale.to(weight.dtype).unsqueeze(2)).clamp_(_Q_MIN, _Q_MAX)
    return q.reshape(n, k).to(torch.int8), scale


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack int8 codes in [-8, 7] of shape [out, in] into int32 words [out, in / 8], low nibble first."""
    if q.dtype != torch.int8:
        raise TypeError(f"codes must be int8, got {q.dtype}")
    if q.dim() != 2 or q.shape[1] % PACK_FACTOR:
        raise ValueError(f"codes must be 2-D with a multiple of {PACK_FACTOR} columns, got {tuple(q.shape)}")
    if q.numel() and (int(q.min()) < _Q_MIN or int(q.max()) > _Q_MAX):
        raise ValueError(f"codes must lie in [{_Q_MIN}, {_Q_MAX}]")
    u = (q.to(torch.int32) + _OFFSET).reshape(q.shape[0], -1, PACK_FACTOR)
    # Shifted nibbles never overlap, so summing them is a bitwise OR (wrapping into the sign bit is fine).
    return (u << _SHIFTS.to(q.device)).sum(dim=2, dtype=torch.int32)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Unpack int32 words [out, in / 8] into int8 codes [out, in] in [-8, 7]."""
    if packed.dtype != torch.int32:
        raise TypeError(f"packed weight must be int32, got {packed.dtype}")
    if packed.dim() != 2:
        raise ValueError(f"packed weight must be 2-D, got shape {tuple(packed.shape)}")
    u = (packed.unsqueeze(2) >> _SHIFTS.to(packed.device)) & 0xF
    return (u - _OFFSET).to(torch.int8).reshape(packed.shape[0], -1)


def quantize_weight(weight: torch.Tensor) -> Int4Weight:
    """Quantize a float weight [out, in] into the packed INT4 format."""
    q, scale = quantize_int4(weight)
    return Int4Weight(pack_int4(q), scale)


def dequantize_weight(weight: Int4Weight, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Dequantize to a dense [out, in] tensor: ``(u - 8) * s``, computed exactly in fp32, then cast."""
    q = unpack_int4(weight.packed).float()
    s = weight.scale.float().repeat_interleave(GROUP_SIZE, dim=1)
    return (q * s).to(dtype)


def random_int4_weight(
    out_features: int, in_features: int, generator: torch.Generator | None = None, scale: float = 0.02
) -> Int4Weight:
    """A valid INT4 weight with random codes and scales near ``scale / 8`` (tests and benchmarks)."""
    if in_features % GROUP_SIZE:
        raise ValueError(f"input size {in_features} must be a multiple of the group size {GROUP_SIZE}")
    packed = torch.randint(
        -(2**31),
        2**31 - 1,
        (out_features, in_features // PACK_FACTOR),
        dtype=torch.int32,
        generator=generator,
    )
    groups = in_features // GROUP_SIZE
    s = (torch.rand(out_features, groups, generator=generator) * 0.5 + 0.75) * (scale / 8)
    return Int4Weight(packed, s.to(torch.bfloat16))
