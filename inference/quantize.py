"""bf16 MoE checkpoint in, Kimi-format INT4 checkpoint out: routed experts INT4, everything else bf16.

The output is what Moonshot ships for Kimi K2 Thinking / K2.6: compressed-tensors ``pack-quantized`` W4A16,
symmetric, group size 32, with a ``quantization_config`` whose ``ignore`` list leaves attention, shared
experts, dense MLPs, routers and ``lm_head`` in bf16. Tensors are streamed one input shard at a time (each
safetensors shard is memory-mapped, converted tensor by tensor, and written before the next is opened), so
peak memory stays near the size of one shard. The output folder appears atomically when it is complete.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from swarmkeep.kernels.format import GROUP_SIZE, quantize_weight

# Bumped whenever the bytes this module writes change, so cached test models are rebuilt.
FORMAT_VERSION = 1

# Kimi K2's `quantization_config`, field for field; `ignore` gets the architecture's extra names below.
KIMI_IGNORE = ["lm_head", r"re:.*self_attn.*", r"re:.*shared_experts.*", r"re:.*mlp\.(gate|up|gate_up|down)_proj.*"]
KIMI_QUANTIZATION_CONFIG: dict[str, Any] = {
    "config_groups": {
        "group_0": {
            "input_activations": None,
            "output_activations": None,
            "targets": ["Linear"],
            "weights": {
                "actorder": None,
                "block_structure": None,
                "dynamic": False,
                "group_size": GROUP_SIZE,
                "num_bits": 4,
                "observer": "minmax",
                "observer_kwargs": {},
                "strategy": "group",
                "symmetric": True,
                "type": "int",
            },
        }
    },
    "format": "pack-quantized",
    "ignore": KIMI_IGNORE,
    "kv_cache_scheme": None,
    "quant_method": "compressed-tensors",
    "quantization_status": "compressed",
}

# Per architecture: the non-expert linears Kimi's list does not already name (routers, Qwen's shared expert).
_ARCH_IGNORE: dict[str, list[str]] = {
    "DeepseekV3ForCausalLM": [],
    "KimiK2ForCausalLM": [],
    "MixtralForCausalLM": [r"re:.*block_sparse_moe\.gate$"],
    "Qwen2MoeForCausalLM": [r"re:.*mlp\.gate$", r"re:.*mlp\.shared_expert\..*", r"re:.*shared_expert_gate$"],
    "Qwen3MoeForCausalLM": [r"re:.*mlp\.gate$"],
}
SUPPORTED_ARCHITECTURES = tuple(_ARCH_IGNORE)

# One routed expert's projection, as Mixtral (w1/w2/w3) and DeepSeek-V3/Qwen-MoE (gate/up/down_proj) name it.
_ROUTED_EXPERT = re.compile(r"\.experts\.\d+\.(w1|w2|w3|gate_proj|up_proj|down_proj)\.weight$")
# Fused expert tensors ([E, ...] in one tensor), as transformers 5 holds them in memory.
_FUSED_EXPERTS = re.compile(r"\.experts\.(gate_up_proj|down_proj|w13|w2)(\.weight)?$")
# Kept in their own dtype: DeepSeek-V3 computes its routing bias in fp32.
_KEEP_DTYPE = re.compile(r"e_score_correction_bias$")


class QuantizeError(ValueError):
    """The input checkpoint cannot be converted; the message says why and what to do."""


@dataclass(frozen=True)
class QuantizeReport:
    """What a conversion did."""

    output: Path
    architecture: str
    shards: int
    quantized_weights: int  # routed expert weights now INT4 (three checkpoint tensors each)
    kept_tensors: int
    input_bytes: int
    output_bytes: int


def kimi_quantization_config(architecture: str) -> dict[str, Any]:
    """Kimi's ``quantization_config`` with the ``ignore`` entries ``architecture`` needs."""
    if architecture not in _ARCH_IGNORE:
        raise QuantizeError(
            f"architecture {architecture!r} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    config = copy.deepcopy(KIMI_QUANTIZATION_CONFIG)
    config["ignore"] = [*KIMI_IGNORE, *_ARCH_IGNORE[architecture]]
    return config


def is_routed_expert_weight(name: str) -> bool:
    """True for one routed expert's gate/up/down weight (never a shared expert's or a dense MLP's)."""
    return _ROUTED_EXPERT.search(name) is not None


def quantize_checkpoint(
    source: Path, target: Path, *, force: bool = False, progress: Callable[[str], None] | None = None
) -> QuantizeReport:
    """Convert the bf16 MoE checkpoint folder ``source`` into a Kimi-format INT4 folder ``target``."""
    say = progress or (lambda _message: None)
    source, target = Path(source).expanduser(), Path(target).expanduser()
    config = _read_config(source)
    architecture = _architecture(config)
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise QuantizeError(f"{source} is already quantized ({method}); give the bf16 checkpoint instead")
    if target.exists():
        if not force:
            raise QuantizeError(f"{target} already exists; remove it or pass --force to replace it")
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shards = _input_shards(source)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        weight_map: dict[str, str] = {}
        quantized = kept = 0
        for index, shard in enumerate(shards, start=1):
            name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
            say(f"[{index}/{len(shards)}] {shard.name} -> {name}")
            tensors: dict[str, torch.Tensor] = {}
            for key, tensor, was_quantized in _convert_shard(shard):
                tensors[key] = tensor
                quantized += was_quantized and key.endswith("weight_packed")
                kept += not was_quantized
            if not quantized and index == len(shards):
                raise QuantizeError(
                    f"no routed expert weights found in {source} (looked for names like "
                    "'model.layers.0.mlp.experts.0.gate_proj.weight' or '...block_sparse_moe.experts.0.w1.weight')"
                )
            _save(tensors, partial / name)
            weight_map.update(dict.fromkeys(tensors, name))
            del tensors
        _write_metadata(source, partial, config, architecture, weight_map)
        os.rename(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return QuantizeReport(
        output=target,
        architecture=architecture,
        shards=len(shards),
        quantized_weights=quantized,
        kept_tensors=kept,
        input_bytes=sum(p.stat().st_size for p in shards),
        output_bytes=sum(p.stat().st_size for p in target.glob("*.safetensors")),
    )


def _read_config(source: Path) -> dict[str, Any]:
    path = source / "config.json"
    if not path.is_file():
        raise QuantizeError(f"{source} has no config.json; give a Hugging Face model folder")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def _architecture(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    for name in architectures:
        if name in _ARCH_IGNORE:
            return str(name)
    raise QuantizeError(
        f"architecture {architectures or '(none)'} is not a supported MoE; "
        f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
    )


def _input_shards(source: Path) -> list[Path]:
    index = source / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [source / name for name in names]
    single = source / "model.safetensors"
    if single.is_file():
        return [single]
    raise QuantizeError(f"{source} holds no model.safetensors or model.safetensors.index.json")


def _convert_shard(shard: Path) -> Iterator[tuple[str, torch.Tensor, bool]]:
    from safetensors import safe_open

    with safe_open(str(shard), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            tensor = f.get_tensor(key)
            if _FUSED_EXPERTS.search(key) and tensor.dim() == 3:
                raise QuantizeError(
                    f"{shard.name}: {key} holds all experts in one tensor; save the model with one tensor per "
                    "expert (the layout on the Hugging Face Hub) and convert that"
                )
            if is_routed_expert_weight(key):
                if tensor.dim() != 2 or tensor.shape[1] % GROUP_SIZE:
                    raise QuantizeError(
                        f"{key}: shape {tuple(tensor.shape)} cannot be quantized in groups of {GROUP_SIZE} inputs"
                    )
                prefix = key.removesuffix("weight")
                for name, value in quantize_weight(tensor.to(torch.bfloat16)).to_compressed_tensors(prefix).items():
                    yield name, value, True
            elif tensor.is_floating_point() and not _KEEP_DTYPE.search(key):
                yield key, tensor.to(torch.bfloat16), False
            else:
                yield key, tensor, False


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def _write_metadata(
    source: Path, target: Path, config: dict[str, Any], architecture: str, weight_map: dict[str, str]
) -> None:
    # Tokenizer, chat template, generation config, remote code: everything that is not a weight travels as is.
    for item in source.iterdir():
        if (
            item.is_file()
            and item.suffix != ".safetensors"
            and item.name
            not in (
                "config.json",
                "model.safetensors.index.json",
            )
        ):
            shutil.copy2(item, target / item.name)
    config = dict(config)
    config["quantization_config"] = kimi_quantization_config(architecture)
    config["dtype"] = "bfloat16"
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    total = sum((target / name).stat().st_size for name in set(weight_map.values()))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (target / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
