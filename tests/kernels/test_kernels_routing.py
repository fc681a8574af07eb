"""Routing: DeepSeek-V3/Kimi sigmoid top-k with a selection-only bias, and softmax top-k."""

from __future__ import annotations

import pytest
import torch

from swarmkeep.kernels.routing import RoutingConfig, select_experts


def test_bias_changes_selection_not_weights() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    config = RoutingConfig(top_k=2, routed_scaling_factor=1.0, renormalize=False)
    ids, weights = select_experts(logits, config, correction_bias=torch.tensor([0.0, 0.0, 5.0, 0.0]))
    assert sorted(ids[0].tolist()) == [0, 2]
    # Weights are the unbiased sigmoid scores of the chosen experts.
    torch.testing.assert_close(weights[0].sort().values, torch.sigmoid(torch.tensor([0.0, 2.0])))


def test_sigmoid_weights_normalised_then_scaled() -> None:
    logits = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    ids, weights = select_experts(logits, RoutingConfig(top_k=8, routed_scaling_factor=2.827))
    torch.testing.assert_close(weights.sum(-1), torch.full((5,), 2.827))
    assert ids.shape == (5, 8) and weights.dtype == torch.float32


def test_group_limited_selection_stays_in_top_groups() -> None:
    logits = torch.tensor([[5.0, 4.0, -9.0, -9.0, 0.0, 0.1, 3.0, 3.0]])
    config = RoutingConfig(top_k=2, n_group=4, topk_group=1, routed_scaling_factor=1.0)
    ids, _ = select_experts(logits, config)
    assert sorted(ids[0].tolist()) == [0, 1]


@pytest.mark.parametrize("renormalize", [True, False])
def test_softmax_topk(renormalize: bool) -> None:
    logits = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    config = RoutingConfig(top_k=2, scoring="softmax", renormalize=renormalize, routed_scaling_factor=1.0)
    ids, weights = select_experts(logits, config)
    probs = torch.softmax(logits, -1)
    expected = probs.gather(1, ids)
    if renormalize:
        expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(weights, expected)


def test_bad_configs_raise() -> None:
    with pytest.raises(ValueError, match="scoring"):
        RoutingConfig(scoring="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k"):
        select_experts(torch.zeros(1, 4), RoutingConfig(top_k=5))
    with pytest.raises(ValueError, match="sigmoid"):
        select_experts(torch.zeros(1, 4), RoutingConfig(top_k=1, scoring="softmax"), torch.zeros(4))
