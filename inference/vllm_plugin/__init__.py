"""vLLM plugin: our INT4 MoE kernels for Kimi-format (compressed-tensors pack-quantized W4A16) checkpoints.

vLLM loads :func:`register` from the ``vllm.general_plugins`` entry point in every process it starts (API
server, engine core, workers), possibly more than once; registering twice changes nothing. On a GPU the plugin
does nothing. On a CPU it registers a subclass of vLLM's compressed-tensors config that picks, per MoE layer:

- ``auto`` (the default): vLLM's own W4A16 MoE method wherever vLLM can build one for the layer; ours where
  vLLM's kernel oracle finds no backend. vLLM 0.32's CPU build has one INT4 W4A16 MoE kernel,
  ``CPUExpertsInt4``, which needs AMX tiles and, even then, refuses group size 32, the Kimi format's;
- ``swarmkeep``: ours for every layer it can run (tests and benchmarks); an error for one it cannot;
- ``vllm``: vLLM's, always (it then fails where vLLM has no kernel, as without the plugin).

The choice comes from the ``SWARMKEEP_INT4_MOE_BACKEND`` setting. This module imports no vLLM code itself, so
the decision logic can be tested without it; :mod:`.int4_moe` holds the vLLM classes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Literal, cast

Int4MoEBackend = Literal["auto", "swarmkeep", "vllm"]
BACKENDS: tuple[Int4MoEBackend, ...] = ("auto", "swarmkeep", "vllm")
BACKEND_ENV = "SWARMKEEP_INT4_MOE_BACKEND"
# The one line in vLLM's log that says our kernels run a layer; tests and `swarmkeep model serve` look for it.
LOG_MARKER = "swarmkeep INT4 MoE"
GROUP_SIZE = 32

# Under vLLM's logger tree so its handler and format apply.
logger = logging.getLogger("vllm.plugins.swarmkeep")
_registered = False


def register() -> None:
    """The ``vllm.general_plugins`` entry point: on a CPU, route Kimi-format INT4 MoE layers through us."""
    global _registered
    if _registered:
        return
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from vllm.model_executor.layers.quantization import register_quantization_config

        from .int4_moe import SwarmkeepCompressedTensorsConfig

        # Replaces the built-in class under the same name; the subclass defers to it for all but MoE layers.
        register_quantization_config("compressed-tensors")(SwarmkeepCompressedTensorsConfig)
        logger.info("%s: plugin registered (backend %s)", LOG_MARKER, configured_backend())
    _registered = True


def configured_backend() -> Int4MoEBackend:
    """The ``SWARMKEEP_INT4_MOE_BACKEND`` setting: ``auto``, ``swarmkeep`` or ``vllm``."""
    from swarmkeep.settings import get_settings

    # Until Settings carries the field, the plugin reads the variable itself.
    value = getattr(get_settings(), "int4_moe_backend", None) or os.environ.get(BACKEND_ENV, "auto")
    value = str(value).strip().lower()
    if value not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={value!r} is not one of {', '.join(BACKENDS)}")
    return cast(Int4MoEBackend, value)


@dataclass(frozen=True)
class MoELayerSpec:
    """What decides whether our kernels can run an MoE layer (read from vLLM's config objects)."""

    weight_quant: Any  # compressed-tensors QuantizationArgs of the experts' weights, or None if not quantized
    input_quant: Any  # ... of their input activations (None for W4A16)
    format: str | None
    activation: str  # vLLM's MoEActivation name
    is_act_and_mul: bool
    has_bias: bool
    use_ep: bool
    dtype: str  # activation dtype, e.g. "torch.bfloat16"
    hidden_size: int
    intermediate_size: int  # per tensor-parallel partition


def unsupported_reason(spec: MoELayerSpec) -> str | None:
    """Why our kernels cannot run this layer, or ``None`` when they can."""
    w = spec.weight_quant
    if w is None:
        return "its experts are not quantized"
    if spec.input_quant is not None:
        return "its activations are quantized (ours is W4A16: bf16 activations)"
    if spec.format != "pack-quantized":
        return f"its format is {spec.format!r}, not 'pack-quantized'"
    wtype = getattr(w.type, "value", w.type)
    strategy = getattr(w.strategy, "value", w.strategy)
    if (w.num_bits, wtype, w.symmetric, strategy, w.group_size) != (4, "int", True, "group", GROUP_SIZE):
        return (
            f"its weights are {w.num_bits}-bit {wtype} symmetric={w.symmetric} {strategy} "
            f"group_size={w.group_size}; ours need 4-bit int, symmetric, group size {GROUP_SIZE}"
        )
    if getattr(w, "actorder", None) not in (None, "static"):
        return "its weights use activation reordering"
    if spec.activation.upper() != "SILU" or not spec.is_act_and_mul:
        return f"its activation is {spec.activation} (ours: SiLU-gated, SwiGLU)"
    if spec.has_bias:
        return "its experts have biases"
    if spec.use_ep:
        return "expert parallelism is on (ours holds every expert; use tensor parallelism)"
    if spec.dtype != "torch.bfloat16":
        return f"the model runs in {spec.dtype}; serve it with --dtype bfloat16"
    if spec.hidden_size % GROUP_SIZE or spec.intermediate_size % GROUP_SIZE:
        return (
            f"hidden size {spec.hidden_size} and expert size {spec.intermediate_size} must be multiples of {GROUP_SIZE}"
        )
    return None


Choice = Literal["swarmkeep", "vllm", "vllm-or-swarmkeep"]


def choose(backend: Int4MoEBackend, reason: str | None, layer: str) -> Choice:
    """Whose method a layer gets: ``vllm-or-swarmkeep`` means vLLM's if it can build one, else ours."""
    if backend == "vllm":
        return "vllm"
    if backend == "swarmkeep":
        if reason is not None:
            raise ValueError(
                f"{BACKEND_ENV}=swarmkeep, but swarmkeep's INT4 MoE kernels cannot run {layer}: {reason}. "
                f"Set {BACKEND_ENV}=auto to let vLLM run it"
            )
        return "swarmkeep"
    return "vllm" if reason is not None else "vllm-or-swarmkeep"
