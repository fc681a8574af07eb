"""Plain-torch references for the W4A16 linear and the MoE layer; every fast kernel is tested against these.

Numerics the fast kernels share: bf16 activations, weights dequantized exactly in fp32, fp32 accumulation,
the SwiGLU product rounded to bf16 before the down projection (as a bf16 model does), bf16 outputs.
"""

from __future__ import annotations

import torch

from .format import Int4Weight, dequantize_weight
from .moe_weights import MoEWeights
from .routing import RoutingConfig, route


def check_activation(x: torch.Tensor, in_features: int) -> None:
    """Raise a clear error unless ``x`` is a bf16 [M, in_features] activation."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"activation must be a tensor, got {type(x).__name__}")
    if x.dtype != torch.bfloat16:
        raise TypeError(f"activation must be bfloat16 (W4A16), got {x.dtype}")
    if x.dim() != 2 or x.shape[1] != in_features:
        raise ValueError(f"activation must be [M, {in_features}], got shape {tuple(x.shape)}")


def w4a16_linear_ref(x: torch.Tensor, weight: Int4Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ dequant(weight).T (+ bias)`` in fp32, returned in bf16. ``x``: bf16 [M, in]."""
    check_activation(x, weight.in_features)
    y = x.float() @ dequantize_weight(weight).t()
    if bias is not None:
        y = y + bias.float()
    return y.to(torch.bfloat16)


def swiglu_ref(x: torch.Tensor, gate: Int4Weight, up: Int4Weight, down: Int4Weight) -> torch.Tensor:
    """One INT4 SwiGLU expert, fp32 result [M, hidden]: ``down(bf16(silu(gate x) * up x))``."""
    g = x.float() @ dequantize_weight(gate).t()
    u = x.float() @ dequantize_weight(up).t()
    h = (torch.nn.functional.silu(g) * u).to(torch.bfloat16)
    return h.float() @ dequantize_weight(down).t()


def dense_swiglu(x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """A bf16 SwiGLU MLP (Kimi's shared expert), run by torch in bf16."""
    f = torch.nn.functional
    return f.linear(f.silu(f.linear(x, gate)) * f.linear(x, up), down)


def moe_combine_ref(x: torch.Tensor, moe: MoEWeights, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Routed experts only, given the routing: ``sum_k weight_k * expert_k(x)`` in fp32 [T, hidden]."""
    out = torch.zeros(x.shape[0], moe.hidden_size, dtype=torch.float32)
    for e in torch.unique(ids).tolist():
        token, slot = torch.nonzero(ids == e, as_tuple=True)
        y = swiglu_ref(x[token], moe.gate[e], moe.up[e], moe.down[e])
        out.index_add_(0, token, y * weights[token, slot].unsqueeze(1))
    return out


def moe_ref(x: torch.Tensor, moe: MoEWeights, config: RoutingConfig) -> torch.Tensor:
    """The whole MoE layer in plain torch: route, run the routed INT4 experts, add the shared expert; bf16."""
    check_activation(x, moe.hidden_size)
    ids, weights = route(x, moe.router, config, moe.correction_bias)
    out = moe_combine_ref(x, moe, ids, weights)
    if moe.shared is not None:
        out = out + moe.shared_output(x).float()
    return out.to(torch.bfloat16)
