"""The vLLM plugin: which MoE method a layer gets, idempotent registration, and our method's forward against the
plain-torch reference on the same INT4 weights (in process, no server)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from swarmkeep.inference.vllm_plugin import BACKEND_ENV, MoELayerSpec, choose, configured_backend, unsupported_reason
from swarmkeep.kernels.moe_weights import random_moe
from swarmkeep.kernels.reference import moe_combine_ref
from swarmkeep.kernels.routing import RoutingConfig, route
from swarmkeep.settings import get_settings

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM (local-model extra)")


def _kimi_weights() -> SimpleNamespace:
    # Kimi's config_groups weights, as compressed-tensors parses them.
    return SimpleNamespace(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32, actorder=None)


def _spec(**changes: object) -> MoELayerSpec:
    spec = MoELayerSpec(
        weight_quant=_kimi_weights(),
        input_quant=None,
        format="pack-quantized",
        activation="SILU",
        is_act_and_mul=True,
        has_bias=False,
        use_ep=False,
        dtype="torch.bfloat16",
        hidden_size=576,
        intermediate_size=1536,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def test_kimi_format_is_supported() -> None:
    assert unsupported_reason(_spec()) is None


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"weight_quant": None}, "not quantized"),
        ({"weight_quant": SimpleNamespace(**{**vars(_kimi_weights()), "group_size": 128})}, "group size 32"),
        ({"weight_quant": SimpleNamespace(**{**vars(_kimi_weights()), "symmetric": False})}, "symmetric"),
        ({"input_quant": object()}, "activations are quantized"),
        ({"format": "marlin-24"}, "pack-quantized"),
        ({"activation": "GELU"}, "SiLU"),
        ({"has_bias": True}, "biases"),
        ({"use_ep": True}, "expert parallelism"),
        ({"dtype": "torch.float16"}, "--dtype bfloat16"),
        ({"intermediate_size": 1000}, "multiples of 32"),
    ],
)
def test_unsupported_layers_say_why(changes: dict[str, object], words: str) -> None:
    reason = unsupported_reason(_spec(**changes))
    assert reason is not None and words in reason


def test_choice_per_backend() -> None:
    assert choose("auto", None, "l") == "vllm-or-swarmkeep"  # vLLM's where it has one, else ours
    assert choose("auto", "why", "l") == "vllm"
    assert choose("vllm", None, "l") == "vllm"
    assert choose("swarmkeep", None, "l") == "swarmkeep"
    with pytest.raises(ValueError, match=f"{BACKEND_ENV}=swarmkeep.*layers.3.*why"):
        choose("swarmkeep", "why", "layers.3")


def test_backend_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert configured_backend() == "auto"
    monkeypatch.setenv(BACKEND_ENV, "SwarmKeep")
    get_settings.cache_clear()
    assert configured_backend() == "swarmkeep"
    monkeypatch.setenv(BACKEND_ENV, "fast")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="auto, swarmkeep, vllm"):
        configured_backend()
    get_settings.cache_clear()


@needs_vllm
def test_register_is_idempotent() -> None:
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, get_quantization_config

    from swarmkeep.inference import vllm_plugin
    from swarmkeep.inference.vllm_plugin.int4_moe import SwarmkeepCompressedTensorsConfig

    vllm_plugin.register()
    methods = list(QUANTIZATION_METHODS)
    vllm_plugin._registered = False  # as if loaded afresh (vLLM may load plugins again in a new process)
    vllm_plugin.register()
    vllm_plugin.register()
    assert get_quantization_config("compressed-tensors") is SwarmkeepCompressedTensorsConfig
    assert list(QUANTIZATION_METHODS) == methods


@needs_vllm
@pytest.mark.parametrize("tokens", [1, 5, 64])
def test_method_matches_reference(tokens: int) -> None:
    """vLLM's loaded parameters (w13 = gate over up, N-first) through our method equal moe_combine_ref."""
    from swarmkeep.inference.vllm_plugin.int4_moe import SwarmkeepInt4MoEMethod

    experts, hidden, inter, top_k = 8, 128, 96, 2
    moe = random_moe(experts, hidden, inter, with_bias=False, seed=tokens)
    layer = SimpleNamespace(
        w13_weight_packed=torch.stack([torch.cat([g.packed, u.packed]) for g, u in zip(moe.gate, moe.up, strict=True)]),
        w13_weight_scale=torch.stack([torch.cat([g.scale, u.scale]) for g, u in zip(moe.gate, moe.up, strict=True)]),
        w2_weight_packed=torch.stack([d.packed for d in moe.down]),
        w2_weight_scale=torch.stack([d.scale for d in moe.down]),
        apply_router_weight_on_input=False,
    )
    method = SwarmkeepInt4MoEMethod(_kimi_weights(), None, SimpleNamespace(experts_per_token=top_k))
    method.process_weights_after_loading(layer)  # type: ignore[arg-type]
    x = (torch.randn(tokens, hidden, generator=torch.Generator().manual_seed(1)) * 0.5).to(torch.bfloat16)
    config = RoutingConfig(top_k=top_k, scoring="softmax", routed_scaling_factor=1.0)
    ids, weights = route(x, moe.router, config)
    out = method.apply(layer, x, weights, ids.to(torch.int32), None, None)
    expected = moe_combine_ref(x, moe, ids, weights)
    assert out.dtype == torch.bfloat16 and out.shape == (tokens, hidden)
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    empty = method.apply(layer, x[:0], weights[:0], ids[:0], None, None)
    assert empty.shape == (0, hidden)
