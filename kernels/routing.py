"""MoE routing: which experts each token visits and with what weight.

Two schemes: DeepSeek-V3's (sigmoid scores in fp32, ``e_score_correction_bias`` added for selection only,
optional group limiting, weights from the unbiased scores, normalised, times
``routed_scaling_factor``), as Kimi K2 uses it; and softmax top-k as Mixtral (renormalised) and
Qwen2-MoE (not renormalised) use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class RoutingConfig:
    """How the router picks experts; the defaults are Kimi K2's."""

    top_k: int = 8
    scoring: Literal["sigmoid", "softmax"] = "sigmoid"
    renormalize: bool = True
    routed_scaling_factor: float = 2.827
    n_group: int = 1
    topk_group: int = 1

    def __post_init__(self) -> None:
        if self.scoring not in ("sigmoid", "softmax"):
            raise ValueError(f"scoring must be 'sigmoid' or 'softmax', got {self.scoring!r}")
        if self.top_k < 1 or self.n_group < 1 or not 1 <= self.topk_group <= self.n_group:
            raise ValueError(
                f"need top_k >= 1 and 1 <= topk_group <= n_group, got top_k={self.top_k}, "
                f"n_group={self.n_group}, topk_group={self.topk_group}"
            )


def router_logits(hidden: torch.Tensor, gate_weight: torch.Tensor) -> torch.Tensor:
    """Router logits [tokens, experts] in fp32, as DeepSeek-V3 computes them (inputs upcast first)."""
    return torch.nn.functional.linear(hidden.float(), gate_weight.float())


def select_experts(
    logits: torch.Tensor,
    config: RoutingConfig,
    correction_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k experts per token from fp32 router logits: (ids int64 [T, k], weights fp32 [T, k])."""
    if logits.dim() != 2:
        raise ValueError(f"router logits must be 2-D [tokens, experts], got shape {tuple(logits.shape)}")
    tokens, experts = logits.shape
    if config.top_k > experts:
        raise ValueError(f"top_k={config.top_k} exceeds the number of experts ({experts})")
    if experts % config.n_group:
        raise ValueError(f"{experts} experts do not split into n_group={config.n_group} groups")
    logits = logits.float()
    if config.scoring == "softmax":
        if correction_bias is not None:
            raise ValueError("e_score_correction_bias is only defined for sigmoid routing")
        scores = torch.softmax(logits, dim=-1)
        choice = scores
    else:
        scores = torch.sigmoid(logits)
        # The bias steers which experts are chosen (load balancing) but never how much they weigh.
        choice = scores if correction_bias is None else scores + correction_bias.float().unsqueeze(0)
    if config.n_group > 1:
        per_group = choice.view(tokens, config.n_group, -1)
        group_score = per_group.topk(min(2, per_group.shape[-1]), dim=-1).values.sum(-1)
        keep = torch.zeros_like(group_score, dtype=torch.bool)
        keep.scatter_(1, group_score.topk(config.topk_group, dim=-1).indices, True)
        choice = choice.masked_fill(~keep.repeat_interleave(experts // config.n_group, dim=1), float("-inf"))
    ids = choice.topk(config.top_k, dim=-1).indices
    weights = scores.gather(1, ids)
    if config.renormalize:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return ids, weights * config.routed_scaling_factor


def route(
    hidden: torch.Tensor,
    gate_weight: torch.Tensor,
    config: RoutingConfig,
    correction_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits then :func:`select_experts`."""
    return select_experts(router_logits(hidden, gate_weight), config, correction_bias)
