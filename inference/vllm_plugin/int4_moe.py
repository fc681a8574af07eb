"""The vLLM side of the plugin: a compressed-tensors config that hands Kimi-format INT4 MoE layers to our
CPU kernels, and the MoE method that runs them. Imported only inside a vLLM process (see :mod:`.__init__`)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch
from vllm.model_executor.layers.fused_moe import RoutedExperts
from vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors import CompressedTensorsConfig
from vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors_moe import (
    CompressedTensorsMoEMethod,
)
from vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors_moe.compressed_tensors_moe_wna16 import (  # noqa: E501
    CompressedTensorsWNA16MoEMethod,
)

from swarmkeep.kernels.cpu import CpuW4A16MoE, feature_names
from swarmkeep.kernels.cpu.moe import moe_path
from swarmkeep.kernels.format import Int4Weight
from swarmkeep.kernels.moe_weights import MoEWeights
from swarmkeep.kernels.routing import RoutingConfig

from . import BACKEND_ENV, LOG_MARKER, MoELayerSpec, choose, configured_backend, logger, unsupported_reason

_logged: set[str] = set()


def _log_once(key: str, message: str) -> None:
    # One line per process rather than one per layer: every layer of a model decides alike.
    if key not in _logged:
        _logged.add(key)
        logger.info("%s", message)


class SwarmkeepCompressedTensorsConfig(CompressedTensorsConfig):
    """vLLM's compressed-tensors config, except that MoE layers vLLM cannot run (or all, when forced) get ours."""

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> Any:
        """As vLLM's, with the MoE method chosen by :func:`swarmkeep.inference.vllm_plugin.choose`."""
        if not isinstance(layer, RoutedExperts):
            return super().get_quant_method(layer, prefix)
        spec = self._layer_spec(layer, prefix)
        choice = choose(configured_backend(), unsupported_reason(spec), prefix)
        if choice == "vllm":
            return super().get_quant_method(layer, prefix)
        if choice == "vllm-or-swarmkeep":
            try:
                return super().get_quant_method(layer, prefix)
            except NotImplementedError as exc:  # vLLM's kernel oracle found no backend for this layer
                reason = f"vLLM has no W4A16 MoE kernel for {prefix} here ({exc}); using swarmkeep's"
                _log_once("choice", f"{LOG_MARKER}: {reason}")
        else:
            forced = f"{prefix} runs on swarmkeep's kernels ({BACKEND_ENV}=swarmkeep)"
            _log_once("choice", f"{LOG_MARKER}: {forced}")
        return SwarmkeepInt4MoEMethod(spec.weight_quant, spec.input_quant, layer.moe_config)

    def _layer_spec(self, layer: RoutedExperts, prefix: str) -> MoELayerSpec:
        # The same lookup vLLM's get_moe_method does: the scheme of expert 0's gate projection.
        self._add_fused_moe_to_target_scheme_map()
        scheme = self.get_scheme_dict(layer, f"{prefix}.0.{layer.ckpt_gate_proj_name}") or {}
        moe = layer.moe_config
        return MoELayerSpec(
            weight_quant=scheme.get("weights"),
            input_quant=scheme.get("input_activations"),
            format=scheme.get("format"),
            activation=getattr(moe.activation, "name", str(moe.activation)),
            is_act_and_mul=moe.is_act_and_mul,
            has_bias=moe.has_bias,
            use_ep=moe.use_ep,
            dtype=str(moe.in_dtype),
            hidden_size=moe.hidden_dim,
            intermediate_size=moe.intermediate_size_per_partition,
        )


class SwarmkeepInt4MoEMethod(CompressedTensorsWNA16MoEMethod):
    """Routed INT4 experts on swarmkeep's CPU kernels, on the path the kernels' dispatch measured fastest here.

    Weights load exactly as for vLLM's WNA16 method (same parameters, same loader); routing and the shared
    expert stay vLLM's: this method gets each token's experts and weights and returns their weighted sum.
    """

    def __init__(self, weight_quant: Any, input_quant: Any, moe: Any) -> None:
        # Skip the parent's __init__, whose only other job is asking vLLM's kernel oracle for a backend.
        CompressedTensorsMoEMethod.__init__(self, moe)
        self.weight_quant = weight_quant
        self.input_quant = input_quant
        self.symmetric = True
        self.num_bits = 4
        self.packed_factor = Fraction(32, 4)
        self.strategy = weight_quant.strategy
        self.group_size = int(weight_quant.group_size)
        self.wna16_backend = None  # type: ignore[assignment]  # no vLLM backend: ours
        self.is_marlin = False
        self.is_transposed = False
        self.input_dtype = torch.bfloat16
        self.kernel: CpuW4A16MoE | None = None

    def process_weights_after_loading(self, layer: Any) -> None:
        """Repack the loaded checkpoint tensors into the CPU kernels' blocked layout (once)."""
        w13, s13 = layer.w13_weight_packed.data, layer.w13_weight_scale.data.to(torch.bfloat16)
        w2, s2 = layer.w2_weight_packed.data, layer.w2_weight_scale.data.to(torch.bfloat16)
        experts, inter = w13.shape[0], w13.shape[1] // 2
        # vLLM stacks each expert's gate rows over its up rows (w1 then w3), as our kernels do.
        gate = [Int4Weight(w13[e, :inter], s13[e, :inter]) for e in range(experts)]
        up = [Int4Weight(w13[e, inter:], s13[e, inter:]) for e in range(experts)]
        down = [Int4Weight(w2[e], s2[e]) for e in range(experts)]
        # The router lives in the model and routing is vLLM's; the kernel only needs the experts.
        router = torch.zeros(experts, w2.shape[1], dtype=torch.bfloat16)
        top_k = self.moe.experts_per_token
        self.kernel = CpuW4A16MoE(MoEWeights(router, gate, up, down), RoutingConfig(top_k=top_k, scoring="softmax"))
        # Builds the C++ extension and times the paths on this layer's shape now (once per machine, cached in
        # the data directory) rather than in the first request.
        hidden = int(w2.shape[1])
        decode, batch = moe_path(None, 1, hidden, inter, None), moe_path(None, 8, hidden, inter, None)
        _log_once(
            "paths",
            f"{LOG_MARKER}: routed experts run on swarmkeep's CPU kernels ({experts} experts of {inter} x "
            f"{hidden} per layer; CPU features {','.join(feature_names()) or 'none'}; path at 1 row per expert "
            f"{decode.name}, at 8 {batch.name})",
        )

    def apply(
        self,
        layer: Any,
        x: torch.Tensor,
        topk_weights: torch.Tensor,
        topk_ids: torch.Tensor,
        shared_experts: Any,
        shared_experts_input: torch.Tensor | None,
    ) -> torch.Tensor:
        """The routed experts' weighted sum for bf16 ``x`` [T, hidden], in ``x``'s dtype."""
        if self.kernel is None:
            raise RuntimeError("SwarmkeepInt4MoEMethod.apply before process_weights_after_loading")
        if layer.apply_router_weight_on_input:
            raise NotImplementedError("swarmkeep's INT4 MoE does not apply router weights on the input")
        if x.shape[0] == 0:
            return torch.zeros_like(x)
        return self.kernel.routed(x, topk_ids, topk_weights).to(x.dtype)
