"""Triton W4A16 GEMM and fused MoE against the reference, under Triton's CPU interpreter at small shapes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch

from swarmkeep.kernels.format import random_int4_weight
from swarmkeep.kernels.gpu import to_triton_layout
from swarmkeep.kernels.moe_weights import random_moe
from swarmkeep.kernels.reference import moe_combine_ref, moe_ref, w4a16_linear_ref
from swarmkeep.kernels.routing import RoutingConfig

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def interpreted() -> Iterator[dict[str, ModuleType]]:
    """The kernel modules with @triton.jit resolved under TRITON_INTERPRET=1 (read at decoration time)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TRITON_INTERPRET", "1")
    # Import afresh rather than importlib.reload: the interpreter breaks on reloaded kernels.
    for name in ("swarmkeep.kernels.gpu.fused_moe", "swarmkeep.kernels.gpu.w4a16_gemm"):
        sys.modules.pop(name, None)
    gemm = importlib.import_module("swarmkeep.kernels.gpu.w4a16_gemm")
    moe = importlib.import_module("swarmkeep.kernels.gpu.fused_moe")
    ops = importlib.import_module("swarmkeep.kernels.gpu.ops")
    yield {"gemm": gemm, "moe": moe, "ops": ops}
    patch.undo()


def _x(m: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(m, k, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)


SMALL = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 64}


@pytest.mark.parametrize("m", [1, 5, 19])
@pytest.mark.parametrize("n,k", [(32, 64), (40, 96), (72, 160)])
@pytest.mark.parametrize("split_k", [1, 2])
def test_gemm_matches_reference(interpreted: dict[str, ModuleType], m: int, n: int, k: int, split_k: int) -> None:
    weight = random_int4_weight(n, k, torch.Generator().manual_seed(n + k), scale=k**-0.5)
    x = _x(m, k, seed=m)
    y = interpreted["ops"].triton_w4a16_linear(x, to_triton_layout(weight), {**SMALL, "SPLIT_K": split_k})
    torch.testing.assert_close(y, w4a16_linear_ref(x, weight), atol=2e-2, rtol=2e-2)


def test_gemm_default_config(interpreted: dict[str, ModuleType]) -> None:
    weight = random_int4_weight(64, 128, torch.Generator().manual_seed(0))
    x = _x(3, 128, seed=0)
    y = interpreted["ops"].triton_w4a16_linear(x, to_triton_layout(weight))
    torch.testing.assert_close(y, w4a16_linear_ref(x, weight), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("tokens", [1, 7])
@pytest.mark.parametrize("scoring", ["sigmoid", "softmax"])
def test_fused_moe_matches_reference(interpreted: dict[str, ModuleType], tokens: int, scoring: str) -> None:
    config = RoutingConfig(top_k=2, scoring=scoring, routed_scaling_factor=2.5 if scoring == "sigmoid" else 1.0)
    moe = random_moe(6, 64, 32, shared_intermediate=32, with_bias=scoring == "sigmoid", seed=tokens)
    x = _x(tokens, 64, seed=tokens)
    layer = interpreted["ops"].TritonW4A16MoE(moe, config, device="cpu")
    y = layer(x, {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32})
    torch.testing.assert_close(y, moe_ref(x, moe, config), atol=3e-2, rtol=3e-2)


def test_fused_moe_one_expert_takes_all(interpreted: dict[str, ModuleType]) -> None:
    moe = random_moe(5, 64, 32, seed=3)
    x = _x(18, 64, seed=3)
    ids = torch.full((18, 1), 2, dtype=torch.int64)  # experts 0, 1, 3, 4 are empty
    weights = torch.rand(18, 1, generator=torch.Generator().manual_seed(3))
    layer = interpreted["ops"].TritonW4A16MoE(moe, RoutingConfig(top_k=1), device="cpu")
    y = layer.routed(x, ids, weights, {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32})
    torch.testing.assert_close(y, moe_combine_ref(x, moe, ids, weights), atol=3e-2, rtol=3e-2)


def test_align_by_expert_pads_each_run(interpreted: dict[str, ModuleType]) -> None:
    ids = torch.tensor([[2, 0], [2, 2]])
    slots, experts = interpreted["moe"].align_by_expert(ids, 4, block_m=4)
    assert experts.tolist() == [0, 2]
    assert slots.tolist() == [1, 4, 4, 4, 0, 2, 3, 4]


def test_needs_cuda_or_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmkeep.kernels.gpu.ops import triton_w4a16_linear

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    weight = to_triton_layout(random_int4_weight(32, 64))
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        triton_w4a16_linear(_x(1, 64, seed=0), weight)
