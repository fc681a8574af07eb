"""Serving benchmark: tokens per second through vLLM's CPU build for the MoE test model with its routed experts
INT4 on swarmkeep's kernels (the plugin), the same MoE in bf16 (vLLM's own MoE), and the dense SmolLM2, at 1, 4
and 16 concurrent requests. Prints a table and writes bench/out/serve.png.

Run: python bench/serve.py [--tokens 64] [--concurrency 1 4 16] [--models int4 bf16 dense]. Each request asks
for exactly ``--tokens`` tokens (ignore_eos) from its own prompt; a round's rate is all generated tokens over
its wall time, best of ``--repeats`` rounds after a warm-up. Each model gets its own server, started and stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from swarmkeep.inference.model_prep import prepare_local_model
from swarmkeep.inference.moe_model import prepare_moe_test_model
from swarmkeep.inference.profiles import ProfileServer, get_profile
from swarmkeep.services.process import free_port

OUT = Path(__file__).resolve().parent / "out"
TOPICS = ["the sea", "a city at night", "mountains", "an old library", "rain", "a train journey", "autumn", "bread"]


@dataclass(frozen=True)
class Subject:
    """One served model: its label, profile, folder and INT4 MoE backend."""

    label: str
    profile: str
    path: Path
    backend: str = "auto"


async def _round(client: httpx.AsyncClient, server: ProfileServer, concurrency: int, tokens: int) -> float:
    async def one(i: int) -> int:
        body = {
            "model": server.served_model_name,
            "prompt": f"Write a short story about {TOPICS[i % len(TOPICS)]} (#{i}).",
            "max_tokens": tokens,
            "temperature": 0,
            "ignore_eos": True,
        }
        response = await client.post(f"{server.base_url}/completions", json=body)
        response.raise_for_status()
        return int(response.json()["usage"]["completion_tokens"])

    began = time.perf_counter()
    generated = sum(await asyncio.gather(*(one(i) for i in range(concurrency))))
    return generated / (time.perf_counter() - began)


async def measure(server: ProfileServer, levels: list[int], tokens: int, repeats: int) -> dict[int, float]:
    """Best tokens/s over ``repeats`` rounds at each concurrency level (after one warm-up round)."""
    async with httpx.AsyncClient(timeout=600) as client:
        await _round(client, server, 2, 8)
        return {c: max([await _round(client, server, c, tokens) for _ in range(repeats)]) for c in levels}


def run(subject: Subject, levels: list[int], tokens: int, repeats: int, logs: Path) -> dict[int, float]:
    """Start the subject's server, measure, stop it."""
    server = ProfileServer(
        subject.profile,
        get_profile(subject.profile),
        str(subject.path),
        port=free_port(),
        log_file=logs / f"serve-{subject.label.split()[0]}.log",
        int4_moe_backend=subject.backend,
    )
    print(f"{subject.label}: starting vLLM ...", flush=True)
    with server:
        if subject.backend == "swarmkeep" and not server.uses_swarmkeep_kernels():
            raise SystemExit(f"the plugin did not take the MoE layers; see {server.log_file}")
        return asyncio.run(measure(server, levels, tokens, repeats))


def plot(results: dict[str, dict[int, float]], levels: list[int], path: Path) -> None:
    """Grouped bars: tokens/s per model at each concurrency level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(results)
    for i, (label, rates) in enumerate(results.items()):
        xs = [j + i * width for j in range(len(levels))]
        bars = ax.bar(xs, [rates[c] for c in levels], width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(levels))], [str(c) for c in levels])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("generated tokens / s")
    ax.set_title(f"vLLM CPU build, {os.cpu_count()} cores: MoE test model and dense SmolLM2-135M")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["int4", "bf16", "dense"], choices=["int4", "bf16", "dense"])
    parser.add_argument("--models-dir", type=Path, default=Path("~/.cache/swarmkeep/models"))
    args = parser.parse_args()

    models_dir = args.models_dir.expanduser()
    moe = prepare_moe_test_model(models_dir, progress=print)
    subjects = {
        "int4": Subject("MoE INT4 (swarmkeep plugin)", "cpu-moe-int4", moe.int4, backend="swarmkeep"),
        "bf16": Subject("MoE bf16 (vLLM)", "cpu-moe-int4", moe.bf16),
        "dense": Subject("dense SmolLM2 bf16 (vLLM)", "cpu-small", prepare_local_model(models_dir)),
    }
    results = {
        subjects[k].label: run(subjects[k], args.concurrency, args.tokens, args.repeats, OUT) for k in args.models
    }

    header = "| model | " + " | ".join(f"{c} req" for c in args.concurrency) + " |"
    print(f"\ntokens/s, {args.tokens} tokens per request, best of {args.repeats}\n")
    print(header)
    print("|" + "---|" * (len(args.concurrency) + 1))
    for label, rates in results.items():
        print(f"| {label} | " + " | ".join(f"{rates[c]:.1f}" for c in args.concurrency) + " |")
    plot(results, args.concurrency, OUT / "serve.png")
    print(f"\nwrote {OUT / 'serve.png'}")


if __name__ == "__main__":
    main()
