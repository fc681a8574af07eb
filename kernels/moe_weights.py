"""The weights of one MoE layer in the Kimi layout: INT4 routed experts, bf16 router and shared expert."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .format import Int4Weight, random_int4_weight


@dataclass
class SharedExpert:
    """A bf16 SwiGLU expert every token visits; Qwen2-MoE scales it by a sigmoid gate, Kimi does not."""

    gate: torch.Tensor  # bf16 [intermediate, hidden]
    up: torch.Tensor  # bf16 [intermediate, hidden]
    down: torch.Tensor  # bf16 [hidden, intermediate]
    output_gate: torch.Tensor | None = None  # bf16 [1, hidden], Qwen2-MoE's shared_expert_gate

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The shared expert's bf16 output for bf16 ``x`` [T, hidden]."""
        f = torch.nn.functional
        y = f.linear(f.silu(f.linear(x, self.gate)) * f.linear(x, self.up), self.down)
        if self.output_gate is not None:
            y = torch.sigmoid(f.linear(x, self.output_gate)) * y
        return y


@dataclass
class MoEWeights:
    """Router, optional selection bias, per-expert INT4 gate/up/down and an optional bf16 shared expert."""

    router: torch.Tensor  # bf16 or fp32 [experts, hidden]
    gate: list[Int4Weight]  # each [intermediate, hidden]
    up: list[Int4Weight]  # each [intermediate, hidden]
    down: list[Int4Weight]  # each [hidden, intermediate]
    correction_bias: torch.Tensor | None = None  # fp32 [experts], DeepSeek-V3's e_score_correction_bias
    shared: SharedExpert | None = None

    def __post_init__(self) -> None:
        experts, hidden = self.router.shape
        if not (len(self.gate) == len(self.up) == len(self.down) == experts):
            raise ValueError(
                f"router has {experts} experts but got {len(self.gate)} gate, {len(self.up)} up and "
                f"{len(self.down)} down weights"
            )
        inter = self.gate[0].out_features if experts else 0
        for e in range(experts):
            if self.gate[e].shape != (inter, hidden) or self.up[e].shape != (inter, hidden):
                raise ValueError(
                    f"expert {e}: gate/up must be [{inter}, {hidden}], got {self.gate[e].shape} and {self.up[e].shape}"
                )
            if self.down[e].shape != (hidden, inter):
                raise ValueError(f"expert {e}: down must be [{hidden}, {inter}], got {self.down[e].shape}")
        if self.correction_bias is not None and self.correction_bias.shape != (experts,):
            raise ValueError(f"correction_bias must be [{experts}], got {tuple(self.correction_bias.shape)}")

    @property
    def num_experts(self) -> int:
        """Number of routed experts."""
        return int(self.router.shape[0])

    @property
    def hidden_size(self) -> int:
        """Model width (the experts' input and output size)."""
        return int(self.router.shape[1])

    @property
    def intermediate_size(self) -> int:
        """Each routed expert's inner width."""
        return self.gate[0].out_features

    def expert_nbytes(self, expert: int) -> int:
        """Bytes of INT4 codes and scales one routed expert streams per forward."""
        return self.gate[expert].nbytes + self.up[expert].nbytes + self.down[expert].nbytes

    def shared_output(self, x: torch.Tensor) -> torch.Tensor:
        """The shared expert's bf16 output (zeros when there is none)."""
        if self.shared is None:
            return torch.zeros(x.shape[0], self.hidden_size, dtype=torch.bfloat16)
        return self.shared(x)


def random_moe(
    experts: int,
    hidden: int,
    intermediate: int,
    shared_intermediate: int | None = None,
    with_bias: bool = True,
    seed: int = 0,
) -> MoEWeights:
    """A random but well-scaled MoE layer for tests and benchmarks."""
    g = torch.Generator().manual_seed(seed)
    gate = [random_int4_weight(intermediate, hidden, g, scale=hidden**-0.5) for _ in range(experts)]
    up = [random_int4_weight(intermediate, hidden, g, scale=hidden**-0.5) for _ in range(experts)]
    down = [random_int4_weight(hidden, intermediate, g, scale=intermediate**-0.5) for _ in range(experts)]
    router = (torch.randn(experts, hidden, generator=g) * hidden**-0.5).to(torch.bfloat16)
    bias = torch.randn(experts, generator=g) * 0.1 if with_bias else None
    shared = None
    if shared_intermediate:

        def dense(o: int, i: int) -> torch.Tensor:
            return (torch.randn(o, i, generator=g) * i**-0.5).to(torch.bfloat16)

        shared = SharedExpert(
            dense(shared_intermediate, hidden),
            dense(shared_intermediate, hidden),
            dense(hidden, shared_intermediate),
        )
    return MoEWeights(router, gate, up, down, bias, shared)
