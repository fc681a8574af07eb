"""The MoE test model: SmolLM2-135M-Instruct upcycled into a Mixtral, then quantized to the Kimi INT4 format.

Recipe. Attention, norms and embeddings are SmolLM2's, unchanged (Mixtral's attention is Llama's). Each
layer's MLP becomes ``EXPERTS`` routed experts, top-``TOP_K`` with renormalised softmax weights. Expert 0 is
the MLP itself; expert e > 0 is the MLP with its intermediate neurons permuted (rows of gate and up, columns of
down, one seeded permutation per layer and expert). A SwiGLU MLP computes the same function under any such
permutation, so in exact arithmetic every expert equals the MLP and, since the routing weights sum to one, the
bf16 MoE computes what the dense model does whatever the (seeded random) router picks. INT4 groups run along
each weight's input, so a permuted down projection groups different neurons together: the quantized experts
differ, and serving the INT4 model right depends on routing each token to the right experts.

Both checkpoints are built once and cached under ``<models dir>/smollm2-moe-<hash>/{bf16,int4}``, keyed by a
hash of the recipe and the source weights; a build takes about 15 s and 1 GB of disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch

from swarmkeep.inference.model_prep import is_prepared, prepare_local_model
from swarmkeep.inference.quantize import FORMAT_VERSION, quantize_checkpoint

MOE_MODEL_NAME = "smollm2-moe-int4"
MOE_BF16_MODEL_NAME = "smollm2-moe-bf16"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")


@dataclass(frozen=True)
class UpcycleRecipe:
    """How the dense model becomes the MoE; its hash names the cache folder."""

    experts: int = 4
    top_k: int = 2
    seed: int = 0
    router_std: float = 0.05  # router weights ~ N(0, std^2): spread logits, so several experts get traffic
    layers_per_shard: int = 8  # several input shards, so quantizing streams shard by shard
    version: int = 1

    def key(self, source: Path) -> str:
        """A short hash of the recipe, the quantizer's format and the source weights' identity."""
        weights = source / "model.safetensors"
        identity = {
            "recipe": asdict(self),
            "quantizer": FORMAT_VERSION,
            "source": [weights.stat().st_size, _header_digest(weights)],
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class MoETestModel:
    """The two cached checkpoints of one recipe."""

    bf16: Path
    int4: Path
    recipe: UpcycleRecipe


def prepare_moe_test_model(
    models_dir: Path, recipe: UpcycleRecipe | None = None, progress: Callable[[str], None] | None = None
) -> MoETestModel:
    """Build (once) and return the bf16 and INT4 MoE test checkpoints under ``models_dir``."""
    say = progress or (lambda _message: None)
    recipe = recipe or UpcycleRecipe()
    models_dir = Path(models_dir).expanduser()
    dense = prepare_local_model(models_dir, progress=say)
    root = models_dir / f"smollm2-moe-{recipe.key(dense)}"
    model = MoETestModel(root / "bf16", root / "int4", recipe)
    if is_built(model.bf16) and is_built(model.int4):
        return model
    root.mkdir(parents=True, exist_ok=True)
    if not is_built(model.bf16):
        say(f"Upcycling {dense.name} into a {recipe.experts}-expert Mixtral in {model.bf16} ...")
        partial = Path(tempfile.mkdtemp(prefix=".bf16.", suffix=".partial", dir=root))
        try:
            upcycle(dense, partial, recipe)
            _rename_into_place(partial, model.bf16)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    if not is_built(model.int4):
        say(f"Quantizing the routed experts to the Kimi INT4 format in {model.int4} ...")
        quantize_checkpoint(model.bf16, model.int4, force=True, progress=say)
    return model


def is_built(path: Path) -> bool:
    """True when ``path`` holds a finished checkpoint (folders are renamed into place only when complete)."""
    return (path / "config.json").is_file() and (path / "model.safetensors.index.json").is_file()


def upcycle(dense: Path, out: Path, recipe: UpcycleRecipe) -> None:
    """Write the bf16 Mixtral upcycled from the dense Llama folder ``dense`` into ``out``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if not is_prepared(dense):
        raise FileNotFoundError(f"no converted dense model in {dense}")
    config = json.loads((dense / "config.json").read_text())
    if config.get("model_type") != "llama" or config.get("mlp_bias") or config.get("attention_bias"):
        raise ValueError(f"{dense} is not a bias-free Llama model; only those upcycle into Mixtral exactly")
    layers = int(config["num_hidden_layers"])
    hidden, inter = int(config["hidden_size"]), int(config["intermediate_size"])
    generator = torch.Generator().manual_seed(recipe.seed)
    weight_map: dict[str, str] = {}
    shards = -(-layers // recipe.layers_per_shard)
    with safe_open(str(dense / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
        for shard in range(shards):
            first, last = shard * recipe.layers_per_shard, min(layers, (shard + 1) * recipe.layers_per_shard)
            tensors: dict[str, torch.Tensor] = {}
            for layer in range(first, last):
                prefix = f"model.layers.{layer}."
                for name in (n for n in names if n.startswith(prefix) and ".mlp." not in n):
                    tensors[name] = f.get_tensor(name)
                gate, up, down = (f.get_tensor(f"{prefix}mlp.{p}_proj.weight") for p in ("gate", "up", "down"))
                moe = f"{prefix}block_sparse_moe."
                router = torch.randn(recipe.experts, hidden, generator=generator) * recipe.router_std
                tensors[f"{moe}gate.weight"] = router.to(torch.bfloat16)
                for expert in range(recipe.experts):
                    perm = torch.arange(inter) if expert == 0 else torch.randperm(inter, generator=generator)
                    tensors[f"{moe}experts.{expert}.w1.weight"] = gate[perm].contiguous()
                    tensors[f"{moe}experts.{expert}.w3.weight"] = up[perm].contiguous()
                    tensors[f"{moe}experts.{expert}.w2.weight"] = down[:, perm].contiguous()
            if shard == shards - 1:
                tensors.update({n: f.get_tensor(n) for n in names if not n.startswith("model.layers.")})
            file = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
            save_file(tensors, str(out / file), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(tensors, file))
    (out / "config.json").write_text(json.dumps(mixtral_config(config, recipe), indent=2) + "\n")
    index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    for name in _TOKENIZER_FILES:
        if (dense / name).is_file():
            shutil.copy2(dense / name, out / name)


def mixtral_config(llama: dict[str, Any], recipe: UpcycleRecipe) -> dict[str, Any]:
    """The Mixtral config.json of the upcycled model: Llama's shapes, norms and rope, plus the experts."""
    keep = (
        "bos_token_id", "eos_token_id", "pad_token_id", "head_dim", "hidden_act", "hidden_size",
        "initializer_range", "intermediate_size", "max_position_embeddings", "num_attention_heads",
        "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "rope_parameters", "tie_word_embeddings",
        "vocab_size",
    )  # fmt: skip
    config = {k: llama[k] for k in keep if k in llama}
    config.update(
        architectures=["MixtralForCausalLM"],
        model_type="mixtral",
        dtype="bfloat16",
        num_local_experts=recipe.experts,
        num_experts_per_tok=recipe.top_k,
        output_router_logits=False,
        router_aux_loss_coef=0.0,
        router_jitter_noise=0.0,
        sliding_window=None,
        attention_dropout=0.0,
        use_cache=True,
    )
    return config


def _header_digest(path: Path) -> str:
    # The safetensors header names every tensor with its dtype, shape and offsets: a cheap identity.
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return hashlib.sha256(f.read(size)).hexdigest()[:16]


def _rename_into_place(partial: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    try:
        os.rename(partial, target)
    except OSError:
        if not is_built(target):
            raise


def load_reference(path: Path) -> Any:
    """A plain-torch reference of the MoE checkpoint in ``path`` (bf16 or Kimi-format INT4).

    transformers' Llama runs attention, norms and embeddings (Mixtral's are Llama's); every MLP is replaced by
    the MoE references in :mod:`swarmkeep.kernels.reference`: ``moe_ref`` on the INT4 experts, or a bf16
    SwiGLU per expert when the checkpoint is not quantized. Returns a ``LlamaForCausalLM`` in bf16, eval mode.
    """
    from safetensors import safe_open
    from transformers import LlamaConfig, LlamaForCausalLM

    config = json.loads((path / "config.json").read_text())
    llama = LlamaConfig(
        **{k: v for k, v in config.items() if k in _LLAMA_KEYS},
        attention_bias=False,
        mlp_bias=False,
    )
    index = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index.values())):
        with safe_open(str(path / shard), framework="pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    with torch.device("meta"):
        model = LlamaForCausalLM(llama)
    dense = {k: v for k, v in tensors.items() if ".block_sparse_moe." not in k}
    model.load_state_dict(dense, strict=False, assign=True)
    model.tie_weights()
    routing = _routing(config)
    for layer in range(llama.num_hidden_layers):
        prefix = f"model.layers.{layer}.block_sparse_moe."
        model.model.layers[layer].mlp = ReferenceMoE(tensors, prefix, config["num_local_experts"], routing)
    model.model.rotary_emb = type(model.model.rotary_emb)(config=llama)  # buffers were on the meta device
    return cast(Any, model).to(torch.bfloat16).eval()


_LLAMA_KEYS = (
    "bos_token_id", "eos_token_id", "pad_token_id", "head_dim", "hidden_act", "hidden_size", "intermediate_size",
    "max_position_embeddings", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps",
    "rope_parameters", "tie_word_embeddings", "vocab_size",
)  # fmt: skip


def _routing(config: dict[str, Any]) -> Any:
    from swarmkeep.kernels.routing import RoutingConfig

    # Mixtral: softmax over all experts, top-k, renormalised, no scaling.
    return RoutingConfig(
        top_k=int(config["num_experts_per_tok"]), scoring="softmax", renormalize=True, routed_scaling_factor=1.0
    )


class ReferenceMoE(torch.nn.Module):
    """One Mixtral MoE block in plain torch, over INT4 (``moe_ref``) or bf16 experts."""

    def __init__(self, tensors: dict[str, torch.Tensor], prefix: str, experts: int, routing: Any) -> None:
        from swarmkeep.kernels.format import Int4Weight
        from swarmkeep.kernels.moe_weights import MoEWeights

        super().__init__()
        self.routing = routing
        router = tensors[f"{prefix}gate.weight"]
        names = {"gate": "w1", "up": "w3", "down": "w2"}
        if f"{prefix}experts.0.w1.weight_packed" in tensors:
            weights = {
                role: [Int4Weight.from_compressed_tensors(tensors, f"{prefix}experts.{e}.{w}.") for e in range(experts)]
                for role, w in names.items()
            }
            self.int4: Any = MoEWeights(router, weights["gate"], weights["up"], weights["down"])
            self.bf16: dict[str, list[torch.Tensor]] | None = None
        else:
            self.int4 = None
            self.bf16 = {
                role: [tensors[f"{prefix}experts.{e}.{w}.weight"] for e in range(experts)] for role, w in names.items()
            }
            self.router = router

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """bf16 [..., hidden] -> bf16 [..., hidden]."""
        from swarmkeep.kernels.reference import dense_swiglu, moe_ref
        from swarmkeep.kernels.routing import route

        x = hidden.reshape(-1, hidden.shape[-1]).to(torch.bfloat16)
        if self.int4 is not None:
            return moe_ref(x, self.int4, self.routing).reshape(hidden.shape)
        assert self.bf16 is not None
        ids, weights = route(x, self.router, self.routing)
        out = torch.zeros(x.shape, dtype=torch.float32)
        for e in torch.unique(ids).tolist():
            token, slot = torch.nonzero(ids == e, as_tuple=True)
            y = dense_swiglu(x[token], self.bf16["gate"][e], self.bf16["up"][e], self.bf16["down"][e])
            out.index_add_(0, token, y.float() * weights[token, slot].unsqueeze(1))
        return out.to(torch.bfloat16).reshape(hidden.shape)
