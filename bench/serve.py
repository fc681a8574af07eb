"""Serving benchmark. By default, the embedded model (SmolLM2-135M-Instruct, profile ``cpu-small``) side by side
on the same weights: vLLM exactly as swarmkeep starts it, Hugging Face transformers ``generate``, and the
weight-bandwidth bound (read bandwidth measured in the same run / bytes of weights read per decode step), at 1
and 8 concurrent streams. Prints a table and writes bench/out/serve-embedded.png.

Run: python bench/serve.py [--tokens 64] [--concurrency 1 8] [--repeats 3] [--variant NAME=JSON ...]
     python bench/serve.py --models int4 bf16 dense [--concurrency 1 4 16]   # the MoE comparison, serve.png

Each request asks for exactly ``--tokens`` tokens (ignore_eos) from its own prompt; transformers generates a
left-padded batch of the same prompts greedily for exactly as many tokens. A rate is all generated tokens over
the round's wall time (prefill included), best of ``--repeats`` rounds after a warm-up. A ``--variant`` is a
cpu-small profile override (fields of ProfileSpec, e.g. ``'{"env": {...}, "args": [...]}'``), served and
measured as one more row. Each vLLM server is started on a free port and stopped before the next.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from swarmkeep.inference.model_prep import prepare_local_model
from swarmkeep.inference.profiles import ProfileServer, get_profile
from swarmkeep.services.process import free_port

OUT = Path(__file__).resolve().parent / "out"
TOPICS = ["the sea", "a city at night", "mountains", "an old library", "rain", "a train journey", "autumn", "bread"]
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "auto": 2}


def prompt(i: int) -> str:
    """The ``i``-th request's prompt (the same for vLLM and transformers)."""
    return f"Write a short story about {TOPICS[i % len(TOPICS)]} (#{i})."


@dataclass(frozen=True)
class Subject:
    """One served model: its label, profile, folder and INT4 MoE backend."""

    label: str
    profile: str
    path: Path
    backend: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Served:
    """What one vLLM server measured: tokens/s per level, its startup time, dtype and thread binding."""

    rates: dict[int, float]
    startup_s: float
    dtype: str
    binding: str


async def _round(client: httpx.AsyncClient, server: ProfileServer, concurrency: int, tokens: int) -> float:
    async def one(i: int) -> int:
        body = {
            "model": server.served_model_name,
            "prompt": prompt(i),
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


def run(subject: Subject, levels: list[int], tokens: int, repeats: int, logs: Path) -> Served:
    """Start the subject's server, measure, stop it."""
    custom = {subject.profile: subject.overrides} if subject.overrides else None
    slug = "".join(ch if ch.isalnum() else "-" for ch in subject.label.lower()).strip("-")
    server = ProfileServer(
        subject.profile,
        get_profile(subject.profile, custom),
        str(subject.path),
        port=free_port(),
        log_file=logs / f"serve-{slug}.log",
        int4_moe_backend=subject.backend,
    )
    argv = server.command()
    dtypes = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--dtype"]
    dtype = dtypes[-1] if dtypes else "auto"  # the last one wins, as in vLLM's own argument parsing
    print(f"{subject.label}: starting vLLM ...", flush=True)
    began = time.monotonic()
    with server:
        startup = time.monotonic() - began
        if subject.backend == "swarmkeep" and not server.uses_swarmkeep_kernels():
            raise SystemExit(f"the plugin did not take the MoE layers; see {server.log_file}")
        rates = asyncio.run(measure(server, levels, tokens, repeats))
        log = server.log_tail(10_000).splitlines()
    binding = "; ".join(line.strip() for line in log if "core ids=" in line or "reserved_cpus=" in line)
    print(f"  ready in {startup:.0f} s; {binding}; " + ", ".join(f"{c}: {r:.1f}" for c, r in rates.items()))
    return Served(rates, startup, dtype, binding)


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def thread_counts() -> list[int]:
    """The thread counts a torch measurement tries: one and all of this process's CPUs."""
    return sorted({1, cores()})


def _with_threads(threads: int, fn: Callable[[], float]) -> float:
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(saved)


def read_bandwidth(nbytes: int = 1 << 30, passes: int = 7) -> float:
    """Memory read bandwidth in bytes/s: best pass of a torch sum over a buffer far larger than the caches."""
    import torch

    buf = torch.ones(nbytes // 4, dtype=torch.float32)
    buf.sum()  # the first pass over fresh pages reads slowly on some VMs; served weights are read many times

    def best_pass() -> float:
        best = 0.0
        for _ in range(passes):
            began = time.perf_counter()
            buf.sum()
            best = max(best, nbytes / (time.perf_counter() - began))
        return best

    return max(_with_threads(t, best_pass) for t in thread_counts())


def weight_params(model_path: Path) -> int:
    """Parameters read per decode step: every tensor in the checkpoint (the tied embedding is the LM head)."""
    from safetensors import safe_open

    total = 0
    for path in model_path.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118
    return total


def transformers_rates(model_path: Path, levels: list[int], tokens: int, repeats: int) -> dict[int, float]:
    """Best tokens/s of ``generate`` (greedy, exactly ``tokens`` new tokens) on a left-padded batch per level."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16).eval()

    def once(batch: int, new: int) -> float:
        inputs = tokenizer([prompt(i) for i in range(batch)], return_tensors="pt", padding=True)
        began = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                **inputs, do_sample=False, max_new_tokens=new, min_new_tokens=new, pad_token_id=tokenizer.pad_token_id
            )
        elapsed = time.perf_counter() - began
        assert out.shape[1] - inputs["input_ids"].shape[1] == new
        return batch * new / elapsed

    once(2, 8)
    rates = {}
    for c in levels:
        # Its best thread count: on a busy 2-core machine two threads per op can be many times slower than one.
        best = {t: _with_threads(t, lambda c=c: max(once(c, tokens) for _ in range(repeats))) for t in thread_counts()}
        rates[c] = max(best.values())
        print(f"  transformers, {c} streams: " + ", ".join(f"{r:.1f} ({t} threads)" for t, r in best.items()))
    gc.collect()
    return rates


def embedded(args: argparse.Namespace, model_path: Path) -> None:
    """The default run: vLLM as swarmkeep serves cpu-small (and variants), transformers, the bandwidth bound."""
    levels, tokens, repeats = args.concurrency, args.tokens, args.repeats
    bandwidth = read_bandwidth()
    params = weight_params(model_path)
    print(f"read bandwidth {bandwidth / 1e9:.1f} GB/s ({cores()} threads); {params / 1e6:.1f} M parameters", flush=True)

    print("transformers generate ...", flush=True)
    hf = transformers_rates(model_path, levels, tokens, repeats)
    print("  " + ", ".join(f"{c}: {r:.1f}" for c, r in hf.items()), flush=True)
    subjects = [Subject("vLLM, swarmkeep cpu-small", "cpu-small", model_path)]
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        subjects.append(Subject(f"vLLM, {name}", "cpu-small", model_path, overrides=json.loads(overrides)))
    served = {s.label: run(s, levels, tokens, repeats, OUT) for s in subjects}
    # Once more after the servers, so a burst of load from elsewhere does not decide the ratio.
    again = transformers_rates(model_path, levels, tokens, repeats)
    hf = {c: max(hf[c], again[c]) for c in levels}

    def bound(c: int, dtype: str) -> float:
        return c * bandwidth / (params * DTYPE_BYTES.get(dtype, 2))

    print(
        f"\ntokens/s, {tokens} tokens per stream, best of {repeats} (transformers: best of both passes); "
        f"bound = streams x {bandwidth / 1e9:.1f} GB/s / weight bytes per step\n"
    )
    cols = " | ".join(f"{c} stream{'s' if c > 1 else ''}: tok/s, vs HF, % bound" for c in levels)
    print(f"| system | startup | {cols} |")
    print("|" + "---|" * (len(levels) + 2))
    print("| transformers generate, bf16 | - | " + " | ".join(
        f"{hf[c]:.1f}, 1.00x, {100 * hf[c] / bound(c, 'bfloat16'):.0f}%" for c in levels) + " |")  # fmt: skip
    for label, s in served.items():
        cells = [
            f"**{s.rates[c]:.1f}**, {s.rates[c] / hf[c]:.2f}x, {100 * s.rates[c] / bound(c, s.dtype):.0f}%"
            for c in levels
        ]
        print(f"| {label} ({s.dtype}) | {s.startup_s:.0f} s | " + " | ".join(cells) + " |")
    print("| bound, bf16 weights | - | " + " | ".join(f"{bound(c, 'bfloat16'):.0f}" for c in levels) + " |")
    results = {"transformers generate (bf16)": hf} | {f"{k} ({v.dtype})": v.rates for k, v in served.items()}
    plot(results, levels, OUT / "serve-embedded.png", "SmolLM2-135M-Instruct, same weights",
         bounds={c: bound(c, "bfloat16") for c in levels})  # fmt: skip
    print(f"\nwrote {OUT / 'serve-embedded.png'}")


def plot(
    results: dict[str, dict[int, float]],
    levels: list[int],
    path: Path,
    title: str,
    bounds: dict[int, float] | None = None,
) -> None:
    """Grouped bars: tokens/s per system at each concurrency level; the bound as a marker when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.8 / len(results)
    for i, (label, rates) in enumerate(results.items()):
        xs = [j + i * width for j in range(len(levels))]
        bars = ax.bar(xs, [rates[c] for c in levels], width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    centres = [j + width * (len(results) - 1) / 2 for j in range(len(levels))]
    if bounds:
        ax.scatter(centres, [bounds[c] for c in levels], marker="_", s=2000, color="black", label="bandwidth bound")
        ax.set_yscale("log")
    ax.set_xticks(centres, [str(c) for c in levels])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("generated tokens / s")
    ax.set_title(f"{title}, {cores()} cores")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def moe(args: argparse.Namespace, models_dir: Path) -> None:
    """The MoE comparison: INT4 on swarmkeep's kernels, bf16 on vLLM's MoE, the dense SmolLM2."""
    from swarmkeep.inference.moe_model import prepare_moe_test_model

    moe_models = prepare_moe_test_model(models_dir, progress=print)
    subjects = {
        "int4": Subject("MoE INT4 (swarmkeep plugin)", "cpu-moe-int4", moe_models.int4, backend="swarmkeep"),
        "bf16": Subject("MoE bf16 (vLLM)", "cpu-moe-int4", moe_models.bf16),
        "dense": Subject("dense SmolLM2 bf16 (vLLM)", "cpu-small", prepare_local_model(models_dir)),
    }
    results = {
        subjects[k].label: run(subjects[k], args.concurrency, args.tokens, args.repeats, OUT).rates for k in args.models
    }
    print(f"\ntokens/s, {args.tokens} tokens per request, best of {args.repeats}\n")
    print("| model | " + " | ".join(f"{c} req" for c in args.concurrency) + " |")
    print("|" + "---|" * (len(args.concurrency) + 1))
    for label, rates in results.items():
        print(f"| {label} | " + " | ".join(f"{rates[c]:.1f}" for c in args.concurrency) + " |")
    plot(results, args.concurrency, OUT / "serve.png", "vLLM CPU build: MoE test model and dense SmolLM2-135M")
    print(f"\nwrote {OUT / 'serve.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--models", nargs="+", default=["embedded"], choices=["embedded", "int4", "bf16", "dense"],
        help="embedded: the cpu-small comparison (default); int4 bf16 dense: the MoE comparison",
    )  # fmt: skip
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON", help="a cpu-small override")
    parser.add_argument("--models-dir", type=Path, default=Path("~/.cache/swarmkeep/models"))
    args = parser.parse_args()

    models_dir = args.models_dir.expanduser()
    if "embedded" in args.models:
        embedded(args, prepare_local_model(models_dir, progress=print))
    if set(args.models) - {"embedded"}:
        args.models = [m for m in args.models if m != "embedded"]
        moe(args, models_dir)


if __name__ == "__main__":
    main()
