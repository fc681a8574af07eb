"""The INT4 format: pack/unpack/quantize round trips, layouts, a cross-check against compressed-tensors."""

from __future__ import annotations

import pytest
import torch

from swarmkeep.kernels.cpu.layout import from_blocked, to_blocked
from swarmkeep.kernels.format import (
    Int4Weight,
    dequantize_weight,
    pack_int4,
    quantize_int4,
    quantize_weight,
    random_int4_weight,
    unpack_int4,
)
from swarmkeep.kernels.gpu.layout import from_triton_layout, to_triton_layout


def _weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)


@pytest.mark.parametrize("shape", [(1, 32), (7, 64), (48, 256), (3, 96)])
def test_pack_unpack_round_trip(shape: tuple[int, int]) -> None:
    q = torch.randint(-8, 8, shape, dtype=torch.int8, generator=torch.Generator().manual_seed(1))
    packed = pack_int4(q)
    assert packed.dtype == torch.int32 and packed.shape == (shape[0], shape[1] // 8)
    torch.testing.assert_close(unpack_int4(packed), q)


def test_nibble_order_is_least_significant_first() -> None:
    q = torch.arange(-8, 8, dtype=torch.int8).reshape(2, 8)
    words = pack_int4(q).view(torch.uint32) if hasattr(torch, "uint32") else pack_int4(q)
    assert int(pack_int4(q)[0, 0]) & 0xF == 0  # q = -8 -> code 0 in the lowest nibble
    assert (int(words[1, 0]) >> 28) & 0xF == 15  # q = 7 -> code 15 in the highest nibble


def test_quantize_error_is_about_half_a_step() -> None:
    w = _weight(64, 256)
    weight = quantize_weight(w)
    err = (dequantize_weight(weight) - w.float()).abs()
    step = weight.scale.float().repeat_interleave(32, dim=1)
    # Half a step, plus a little where the group maximum (7.5 steps) is clamped to code 7 after the scale
    # was rounded to bf16.
    assert bool((err <= step * 0.55).all())


def test_zero_group_quantizes_to_zeros() -> None:
    w = torch.zeros(2, 64, dtype=torch.bfloat16)
    q, scale = quantize_int4(w)
    assert bool((q == 0).all()) and bool((scale > 0).all())


def test_checkpoint_tensors_round_trip() -> None:
    weight = quantize_weight(_weight(16, 64))
    tensors = weight.to_compressed_tensors("experts.0.gate_proj.")
    assert tensors["experts.0.gate_proj.weight_shape"].tolist() == [16, 64]
    back = Int4Weight.from_compressed_tensors(tensors, "experts.0.gate_proj.")
    torch.testing.assert_close(back.packed, weight.packed)
    torch.testing.assert_close(back.scale, weight.scale)


@pytest.mark.parametrize("n", [16, 40, 1])
def test_kernel_layouts_round_trip(n: int) -> None:
    weight = random_int4_weight(n, 96, torch.Generator().manual_seed(n))
    blocked = to_blocked(weight)
    assert blocked.codes.shape[0] * 16 >= n and blocked.out_features == n
    torch.testing.assert_close(from_blocked(blocked).packed, weight.packed)
    torch.testing.assert_close(from_blocked(blocked).scale, weight.scale)
    torch.testing.assert_close(from_triton_layout(to_triton_layout(weight)).packed, weight.packed)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="multiple of the group size"):
        quantize_int4(torch.zeros(4, 40))
    with pytest.raises(TypeError, match="floating-point"):
        quantize_int4(torch.zeros(4, 64, dtype=torch.int32))
    with pytest.raises(TypeError, match="int8"):
        pack_int4(torch.zeros(2, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(torch.full((2, 8), 9, dtype=torch.int8))
    with pytest.raises(TypeError, match="bfloat16"):
        Int4Weight(torch.zeros(2, 8, dtype=torch.int32), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        Int4Weight(torch.zeros(2, 8, dtype=torch.int32), torch.zeros(2, 3, dtype=torch.bfloat16))


# --- cross-check against the compressed-tensors library itself -----------------------------------------

ct_pack = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")


def test_packing_matches_compressed_tensors() -> None:
    q = torch.randint(-8, 8, (24, 128), dtype=torch.int8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(pack_int4(q), ct_pack.pack_to_int32(q, 4))
    torch.testing.assert_close(unpack_int4(pack_int4(q)), ct_pack.unpack_from_int32(pack_int4(q), 4, q.shape))


def test_quantization_matches_compressed_tensors() -> None:
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import dequantize, quantize
    from compressed_tensors.quantization.utils import calculate_qparams

    # Kimi's config_groups: int, 4 bits, symmetric, group strategy, group_size 32.
    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32)
    w = _weight(32, 256, seed=3)
    groups = w.reshape(32, 8, 32)
    scale, zero = calculate_qparams(groups.amin(dim=2), groups.amax(dim=2), args)
    q_ct = quantize(w, scale, zero, args, dtype=torch.int8)
    q, my_scale = quantize_int4(w)
    torch.testing.assert_close(my_scale, scale.to(torch.bfloat16))
    torch.testing.assert_close(q, q_ct)
    packed = pack_int4(q)
    torch.testing.assert_close(packed, ct_pack.pack_to_int32(q_ct, 4))
    ct_dequant = dequantize(q_ct, scale, zero, args).float()
    torch.testing.assert_close(dequantize_weight(Int4Weight(packed, my_scale)), ct_dequant, atol=1e-2, rtol=1e-2)
