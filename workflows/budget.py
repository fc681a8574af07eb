"""Per-job budgets (tokens, cost, deadline) and cost accounting. Pure code."""

from __future__ import annotations


def cost_usd(prompt_tokens: int, completion_tokens: int, price_in_per_mtok: float, price_out_per_mtok: float) -> float:
    """What tokens cost at a model's prices (USD per million input and output tokens)."""
    return (prompt_tokens * price_in_per_mtok + completion_tokens * price_out_per_mtok) / 1_000_000


def budget_exceeded(tokens: int, cost: float, max_tokens: int | None, max_cost: float | None) -> str | None:
    """Why the job must stop spending (a reason for `partial_reason`), or None while within budget."""
    if max_tokens is not None and tokens >= max_tokens:
        return f"token budget reached ({tokens} of {max_tokens} tokens)"
    if max_cost is not None and cost >= max_cost:
        return f"cost budget reached (${cost:.4f} of ${max_cost:.4f})"
    return None
