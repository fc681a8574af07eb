"""`swarmkeep model quantize`: bf16 MoE checkpoints (Mixtral, Qwen2-MoE, DeepSeek-V3 naming) in, Kimi INT4 out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from swarmkeep.cli.model import app
from swarmkeep.inference.quantize import (
    KIMI_IGNORE,
    QuantizeError,
    is_routed_expert_weight,
    kimi_quantization_config,
    quantize_checkpoint,
)
from swarmkeep.kernels.format import Int4Weight, dequantize_weight

HIDDEN, INTER, EXPERTS = 64, 96, 4


def _w(*shape: int, seed: int) -> torch.Tensor:
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.05).to(torch.bfloat16)


def _layer(arch: str, layer: int) -> dict[str, torch.Tensor]:
    p = f"model.layers.{layer}."
    t = {
        f"{p}self_attn.q_proj.weight": _w(HIDDEN, HIDDEN, seed=layer),
        f"{p}input_layernorm.weight": _w(HIDDEN, seed=7),
    }
    if arch == "MixtralForCausalLM":
        t[f"{p}block_sparse_moe.gate.weight"] = _w(EXPERTS, HIDDEN, seed=1)
        for e in range(EXPERTS):
            for name, shape in (("w1", (INTER, HIDDEN)), ("w3", (INTER, HIDDEN)), ("w2", (HIDDEN, INTER))):
                t[f"{p}block_sparse_moe.experts.{e}.{name}.weight"] = _w(*shape, seed=100 * layer + e)
        return t
    t[f"{p}mlp.gate.weight"] = _w(EXPERTS, HIDDEN, seed=1)
    shared = "shared_expert" if arch == "Qwen2MoeForCausalLM" else "shared_experts"
    for proj, shape in (("gate_proj", (INTER, HIDDEN)), ("up_proj", (INTER, HIDDEN)), ("down_proj", (HIDDEN, INTER))):
        t[f"{p}mlp.{shared}.{proj}.weight"] = _w(*shape, seed=3)
        for e in range(EXPERTS):
            t[f"{p}mlp.experts.{e}.{proj}.weight"] = _w(*shape, seed=100 * layer + e)
    if arch == "DeepseekV3ForCausalLM":
        t[f"{p}mlp.gate.e_score_correction_bias"] = torch.randn(EXPERTS)
    return t


def _checkpoint(folder: Path, arch: str) -> dict[str, torch.Tensor]:
    """A two-layer bf16 MoE in two shards, with a tokenizer file beside it."""
    folder.mkdir()
    everything: dict[str, torch.Tensor] = {}
    weight_map = {}
    for layer in range(2):
        tensors = _layer(arch, layer)
        if layer == 1:
            tensors["model.embed_tokens.weight"] = _w(32, HIDDEN, seed=9).float()  # fp32 in: bf16 out
        name = f"model-0000{layer + 1}-of-00002.safetensors"
        save_file(tensors, str(folder / name))
        weight_map.update(dict.fromkeys(tensors, name))
        everything.update(tensors)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"architectures": [arch], "hidden_size": HIDDEN}))
    (folder / "tokenizer.json").write_text("{}")
    return everything


def _read(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    return out


@pytest.mark.parametrize("arch", ["MixtralForCausalLM", "Qwen2MoeForCausalLM", "DeepseekV3ForCausalLM"])
def test_routed_experts_int4_rest_bf16(tmp_path: Path, arch: str) -> None:
    original = _checkpoint(tmp_path / "bf16", arch)
    report = quantize_checkpoint(tmp_path / "bf16", tmp_path / "int4")
    out = _read(tmp_path / "int4")
    experts = [k for k in original if is_routed_expert_weight(k)]
    assert report.quantized_weights == len(experts) and report.shards == 2 and len(experts) == 2 * 3 * EXPERTS
    for key in experts:
        prefix = key.removesuffix("weight")
        assert key not in out
        weight = Int4Weight.from_compressed_tensors(out, prefix)
        assert out[f"{prefix}weight_shape"].tolist() == list(original[key].shape)
        # Round to nearest: within half a step of the original, a little more where absmax / 7.5 clips to 7.
        step = weight.scale.float().repeat_interleave(32, dim=1)
        assert bool(((dequantize_weight(weight) - original[key].float()).abs() <= step * 0.6).all())
    for key, tensor in original.items():
        if is_routed_expert_weight(key):
            continue
        if key.endswith("e_score_correction_bias"):
            assert out[key].dtype == torch.float32  # DeepSeek-V3 routes in fp32
        else:
            assert out[key].dtype == torch.bfloat16
        torch.testing.assert_close(out[key].float(), tensor.float(), atol=4e-3, rtol=1e-2)
    config = json.loads((tmp_path / "int4" / "config.json").read_text())
    assert config["quantization_config"] == kimi_quantization_config(arch)
    assert config["quantization_config"]["ignore"][: len(KIMI_IGNORE)] == KIMI_IGNORE
    index = json.loads((tmp_path / "int4" / "model.safetensors.index.json").read_text())["weight_map"]
    assert set(index) == set(out)
    assert (tmp_path / "int4" / "tokenizer.json").is_file()


def test_vllm_reads_the_config_as_kimi_w4a16(tmp_path: Path) -> None:
    """compressed-tensors parses the written config as W4A16 group-32 pack-quantized for the experts only."""
    from compressed_tensors.quantization import QuantizationConfig

    config = QuantizationConfig.model_validate(kimi_quantization_config("MixtralForCausalLM"))
    weights = config.config_groups["group_0"].weights
    assert (weights.num_bits, weights.group_size, weights.symmetric) == (4, 32, True)
    assert weights.strategy == "group" and weights.type == "int"
    assert config.format == "pack-quantized"


def test_clear_errors(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "bf16", "MixtralForCausalLM")
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(QuantizeError, match="not a supported MoE"):
        quantize_checkpoint(tmp_path / "dense", tmp_path / "x")
    quantize_checkpoint(tmp_path / "bf16", tmp_path / "int4")
    with pytest.raises(QuantizeError, match="already exists"):
        quantize_checkpoint(tmp_path / "bf16", tmp_path / "int4")
    with pytest.raises(QuantizeError, match="already quantized"):
        quantize_checkpoint(tmp_path / "int4", tmp_path / "again")
    assert not list(tmp_path.glob(".*partial"))  # failed runs leave nothing behind


def test_cli(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "bf16", "Qwen2MoeForCausalLM")
    result = CliRunner().invoke(app, ["quantize", str(tmp_path / "bf16"), str(tmp_path / "int4")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "Qwen2MoeForCausalLM" in output and "24 expert weights INT4" in output
    again = CliRunner().invoke(app, ["quantize", str(tmp_path / "bf16"), str(tmp_path / "int4")])
    assert again.exit_code == 1 and "--force" in again.output
