"""CPU W4A16 linear and fused MoE against the plain-torch reference, on every path this machine has."""

from __future__ import annotations

import pytest
import torch

from swarmkeep.kernels.cpu import (
    CpuPath,
    CpuW4A16Linear,
    CpuW4A16MoE,
    available_paths,
    choose_path,
    to_blocked,
    w4a16_linear,
)
from swarmkeep.kernels.format import random_int4_weight
from swarmkeep.kernels.moe_weights import random_moe
from swarmkeep.kernels.reference import moe_combine_ref, moe_ref, w4a16_linear_ref
from swarmkeep.kernels.routing import RoutingConfig

PATHS = list(available_paths())


def _x(m: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(m, k, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)


def test_fast_paths_are_built_here() -> None:
    # CI runs on x86-64 with a compiler: the extension must build, or the fast paths silently vanish; every x86-64
    # CPU of the last decade has AVX2 + FMA.
    assert CpuPath.GENERIC in PATHS and CpuPath.AVX2 in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
@pytest.mark.parametrize("m", [1, 2, 3, 5, 17, 33, 70])
@pytest.mark.parametrize("n,k", [(16, 32), (40, 96), (200, 256), (64, 1024)])
def test_linear_matches_reference(path: CpuPath, m: int, n: int, k: int) -> None:
    weight = random_int4_weight(n, k, torch.Generator().manual_seed(n * k), scale=k**-0.5)
    x = _x(m, k, seed=m)
    y = w4a16_linear(x, to_blocked(weight), path=path)
    torch.testing.assert_close(y, w4a16_linear_ref(x, weight), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_linear_keeps_large_and_tiny_activations(path: CpuPath) -> None:
    # The FP16 path scales each row by a power of two into fp16's range: rows of 3e4 would overflow fp16 products
    # unscaled, rows of 1e-6 would sink into its subnormals, and a row with one outlier is scaled by it.
    weight = random_int4_weight(64, 256, torch.Generator().manual_seed(3), scale=256**-0.5)
    x = _x(4, 256, seed=4).float()
    x[0] *= 3e4
    x[1] *= 1e-6
    x[2, 7] = 5e3
    x = x.to(torch.bfloat16)
    y = w4a16_linear(x, to_blocked(weight), path=path).float()
    ref = w4a16_linear_ref(x, weight).float()
    for row in range(4):
        torch.testing.assert_close(y[row], ref[row], atol=2e-2 * ref[row].abs().max().item(), rtol=2e-2)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_linear_thread_counts_agree(threads: int) -> None:
    weight = random_int4_weight(96, 128, torch.Generator().manual_seed(0))
    x = _x(4, 128, seed=0)
    path = choose_path(4)  # by feature bits: the measured choice may differ between thread counts
    y = w4a16_linear(x, to_blocked(weight), path=path, threads=threads)
    torch.testing.assert_close(y, w4a16_linear(x, to_blocked(weight), path=path, threads=1), atol=0, rtol=0)


def test_linear_module_with_bias_and_leading_dims() -> None:
    weight = random_int4_weight(48, 64, torch.Generator().manual_seed(1))
    bias = torch.randn(48).to(torch.bfloat16)
    x = _x(6, 64, seed=2)
    layer = CpuW4A16Linear(weight, bias)
    y = layer(x.reshape(2, 3, 64))
    assert y.shape == (2, 3, 48)
    torch.testing.assert_close(y.reshape(6, 48), w4a16_linear_ref(x, weight, bias), atol=2e-2, rtol=2e-2)


def test_linear_empty_batch() -> None:
    weight = random_int4_weight(32, 64)
    assert w4a16_linear(torch.zeros(0, 64, dtype=torch.bfloat16), to_blocked(weight)).shape == (0, 32)


def test_linear_rejects_bad_inputs() -> None:
    blocked = to_blocked(random_int4_weight(32, 64))
    with pytest.raises(TypeError, match="bfloat16"):
        w4a16_linear(torch.zeros(1, 64), blocked)
    with pytest.raises(ValueError, match=r"\[M, 64\]"):
        w4a16_linear(torch.zeros(1, 32, dtype=torch.bfloat16), blocked)
    with pytest.raises(ValueError, match="threads"):
        w4a16_linear(torch.zeros(1, 64, dtype=torch.bfloat16), blocked, threads=0)


KIMI = RoutingConfig(top_k=4, scoring="sigmoid", renormalize=True, routed_scaling_factor=2.827)
MIXTRAL = RoutingConfig(top_k=2, scoring="softmax", renormalize=True, routed_scaling_factor=1.0)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
@pytest.mark.parametrize("tokens", [1, 3, 21])
@pytest.mark.parametrize("config", [KIMI, MIXTRAL], ids=["kimi", "mixtral"])
def test_moe_matches_reference(path: CpuPath, tokens: int, config: RoutingConfig) -> None:
    moe = random_moe(
        12, 128, 64, shared_intermediate=64 if config is KIMI else None, with_bias=config is KIMI, seed=tokens
    )
    x = _x(tokens, 128, seed=tokens)
    y = CpuW4A16MoE(moe, config)(x, path=path)
    torch.testing.assert_close(y, moe_ref(x, moe, config), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_moe_all_tokens_to_one_expert_and_empty_experts(path: CpuPath) -> None:
    moe = random_moe(8, 64, 32, seed=5)
    x = _x(37, 64, seed=5)
    ids = torch.full((37, 2), 3, dtype=torch.int64)
    ids[:, 1] = 6  # experts 3 and 6 take everything; the other six are empty
    weights = torch.rand(37, 2, generator=torch.Generator().manual_seed(5))
    y = CpuW4A16MoE(moe, KIMI).routed(x, ids, weights, path=path)
    torch.testing.assert_close(y, moe_combine_ref(x, moe, ids, weights), atol=3e-2, rtol=3e-2)


def test_moe_rejects_bad_routing() -> None:
    moe = random_moe(4, 64, 32)
    layer = CpuW4A16MoE(moe, MIXTRAL)
    x = _x(2, 64, seed=0)
    with pytest.raises(ValueError, match="expert ids"):
        layer.routed(x, torch.tensor([[0, 4], [1, 2]]), torch.ones(2, 2))
    with pytest.raises(ValueError, match="must both be"):
        layer.routed(x, torch.tensor([[0, 1]]), torch.ones(1, 2))
