"""INT4 weight-only (W4A16) kernels for the Kimi weight format (compressed-tensors pack-quantized, group 32).

- :mod:`.format`: quantize, pack, unpack, dequantize; checkpoint tensors in and out.
- :mod:`.reference`: plain-torch W4A16 linear and MoE layer, the ground truth for every kernel.
- :mod:`.routing`: DeepSeek-V3/Kimi sigmoid routing and Mixtral/Qwen2-MoE softmax routing.
- :mod:`.cpu`: the C++ AVX-512/AMX linear and fused MoE (built on first use, plain-torch fallback).
- :mod:`.gpu`: Triton W4A16 GEMM and fused MoE, imported behind a guard.
"""

from .format import (
    GROUP_SIZE,
    Int4Weight,
    dequantize_weight,
    pack_int4,
    quantize_int4,
    quantize_weight,
    unpack_int4,
)
from .moe_weights import MoEWeights, SharedExpert
from .reference import moe_ref, w4a16_linear_ref
from .routing import RoutingConfig, route, select_experts

__all__ = [
    "GROUP_SIZE",
    "Int4Weight",
    "MoEWeights",
    "RoutingConfig",
    "SharedExpert",
    "dequantize_weight",
    "moe_ref",
    "pack_int4",
    "quantize_int4",
    "quantize_weight",
    "route",
    "select_experts",
    "unpack_int4",
    "w4a16_linear_ref",
]
