"""The MoE test model: upcycled from SmolLM2's real weights, exact before quantization, cached by recipe."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from swarmkeep.inference.moe_model import UpcycleRecipe, load_reference, prepare_moe_test_model

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("transformers") is None, reason="needs the local-model extra (transformers)"
    ),
]

TEXT = "The capital of France is Paris. The capital of Germany is Berlin, and the capital of Italy is"


@pytest.fixture(scope="module")
def models_dir() -> Path:
    return Path(os.environ.get("SWARMKEEP_MODEL_DIR", "~/.cache/swarmkeep/models")).expanduser()


def test_bf16_moe_computes_what_the_dense_model_does(models_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = prepare_moe_test_model(models_dir)
    dense_dir = models_dir / "smollm2-135m-instruct"
    ids = AutoTokenizer.from_pretrained(dense_dir)(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        dense = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.bfloat16).eval()(ids).logits
        moe = load_reference(model.bf16)(ids).logits
    dense_lp, moe_lp = dense.float().log_softmax(-1), moe.float().log_softmax(-1)
    assert torch.equal(dense_lp.argmax(-1), moe_lp.argmax(-1))
    # Equal in exact arithmetic; bf16 sums neurons in another order in the permuted experts.
    kl = (dense_lp.exp() * (dense_lp - moe_lp)).sum(-1)
    assert float(kl.max()) < 0.01


def test_recipe_is_cached_by_hash(models_dir: Path) -> None:
    model = prepare_moe_test_model(models_dir)
    assert prepare_moe_test_model(models_dir) == model
    other = UpcycleRecipe(seed=1)
    dense = models_dir / "smollm2-135m-instruct"
    assert other.key(dense) != model.recipe.key(dense) and model.recipe.key(dense) in str(model.int4)
    config = json.loads((model.int4 / "config.json").read_text())
    assert config["architectures"] == ["MixtralForCausalLM"] and config["num_local_experts"] == 4
    assert config["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] == 32
