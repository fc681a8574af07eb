"""CPU W4A16 benchmark: read bandwidth, then the INT4 linear (ours, torch's int4 op, bf16, fp32) on Kimi
expert shapes and the fused MoE, at M = 1..64. Prints a table and writes bench/out/kernels.png.

Run: python bench/kernels.py [--iters N] [--threads 2]. Every weight is drawn from a rotating pool larger than
the last-level cache, so each call streams its weights from memory as a decode step does. Every table says which
CPU features the kernels used and which path ran each row; ``SWARMKEEP_INT4_CPU_FEATURES=avx2`` (with
``ATEN_CPU_CAPABILITY=avx2`` for torch's own ops) measures an AVX-512 machine as an AVX2-only one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from swarmkeep.kernels.cpu import CpuW4A16MoE, choose_path, feature_names, to_blocked, w4a16_linear
from swarmkeep.kernels.cpu.extension import extension
from swarmkeep.kernels.cpu.moe import moe_path
from swarmkeep.kernels.format import random_int4_weight
from swarmkeep.kernels.moe_weights import random_moe
from swarmkeep.kernels.routing import RoutingConfig

PATHS: dict[tuple[int, int, int], str] = {}  # (n, k, M) -> the path "ours" ran
SHAPES = [(2048, 7168), (7168, 2048)]  # (N, K): Kimi's gate/up and down projections
MS = [1, 2, 4, 8, 16, 32, 64]
OUT = Path(__file__).resolve().parent / "out"


def llc_bytes() -> int:
    """Size of the last-level cache (sysfs), or 64 MiB when unknown."""
    path = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
    try:
        text = path.read_text().strip()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        return int(text.rstrip("KMG")) * scale
    except (OSError, ValueError):
        return 64 << 20


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), so that figures from different machines are never mixed up."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def pool_size(item_bytes: int, target: int) -> int:
    """How many copies of a weight make a pool of ``target`` bytes (at least 4)."""
    return max(4, -(-target // item_bytes))


def median_time(fn: Callable[[int], object], iters: int, warmup: int = 2) -> float:
    """Median wall time of fn(i) over ``iters`` calls after ``warmup`` untimed ones.

    Give a pool's length as ``warmup``: the first pass over freshly built memory reads at a fraction of the
    bandwidth on some machines, and a served model's weights are read many times after they are loaded.
    """
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(iters):
        start = time.perf_counter()
        fn(warmup + i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_bandwidth(threads: int, target: int) -> float:
    """Best of five passes of the extension's streaming read over a ``target``-byte buffer, in bytes/s."""
    ext = extension()
    buf = torch.ones(target + 4096, dtype=torch.uint8)
    offset = (-buf.data_ptr()) % 64
    view = buf[offset : offset + target]
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        if ext is not None:
            ext.read_bytes(view, threads)
        else:
            view.view(torch.int64).sum()
        best = max(best, target / (time.perf_counter() - start))
    return best


def best_threads(fn: Callable[[int], object], iters: int, threads: int, warmup: int) -> float:
    """torch's own ops at their best thread count up to ``threads`` (2 threads can lose on a busy machine)."""
    saved = torch.get_num_threads()
    try:
        results = []
        for t in sorted({1, threads}):
            torch.set_num_threads(t)
            results.append(median_time(fn, iters, warmup))
        return min(results)
    finally:
        torch.set_num_threads(saved)


def bench_linear(n: int, k: int, iters: int, threads: int, target: int) -> dict[str, dict[int, tuple[float, int]]]:
    """{method: {M: (seconds, bytes streamed)}} for one shape."""
    gen = torch.Generator().manual_seed(0)
    results: dict[str, dict[int, tuple[float, int]]] = {}

    weights = [random_int4_weight(n, k, gen) for _ in range(pool_size(n * k // 2, target))]
    pool = [to_blocked(w) for w in weights]
    del weights
    nbytes = pool[0].nbytes
    results["ours"] = {}
    for m in MS:
        PATHS[(n, k, m)] = choose_path(m, (n, k), threads).name
        x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
        t = median_time(lambda i, x=x, p=pool: w4a16_linear(x, p[i % len(p)], threads=threads), iters, len(pool))
        results["ours"][m] = (t, nbytes)
    del pool

    # torch's int4 op: codes [N, K] in 0..15 packed by torch, scales-and-zeros [K/32, N, 2] bf16.
    packed = [
        torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            torch.randint(0, 16, (n, k), dtype=torch.int32, generator=gen), 1
        )
        for _ in range(pool_size(n * k // 2, target))
    ]
    sz = [torch.rand(k // 32, n, 2, generator=gen).to(torch.bfloat16) for _ in packed]
    int4_bytes = packed[0].numel() * packed[0].element_size() + sz[0].numel() * 2
    results["torch int4"] = {}
    for m in MS:
        x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
        t = best_threads(
            lambda i, x=x, p=packed, s=sz: torch.ops.aten._weight_int4pack_mm_for_cpu(
                x, p[i % len(p)], 32, s[i % len(s)]
            ),
            iters,
            threads,
            len(packed),
        )
        results["torch int4"][m] = (t, int4_bytes)
    del packed, sz

    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        item = n * k * torch.finfo(dtype).bits // 8
        dense = [torch.randn(n, k, generator=gen).to(dtype) for _ in range(pool_size(item, target))]
        results[name] = {}
        for m in MS:
            x = torch.randn(m, k, generator=gen).to(dtype)
            t = best_threads(
                lambda i, x=x, d=dense: torch.nn.functional.linear(x, d[i % len(d)]), iters, threads, len(dense)
            )
            results[name][m] = (t, item)
        del dense
    return results


def bench_moe(iters: int, threads: int, experts: int) -> dict[int, tuple[float, int]]:
    """{tokens: (seconds, bytes of the selected experts)} for a Kimi-shaped layer (7168 x 2048, top-8)."""
    moe = random_moe(experts, 7168, 2048, with_bias=True, seed=0)
    layer = CpuW4A16MoE(moe, RoutingConfig(top_k=8))
    per_expert = moe.expert_nbytes(0)
    gen = torch.Generator().manual_seed(1)
    # One untimed pass over every expert, as for the linear's pools.
    everyone = torch.arange(experts).view(-1, 8)
    layer.routed(
        torch.randn(len(everyone), 7168, generator=gen).to(torch.bfloat16), everyone, torch.ones(everyone.shape)
    )
    results = {}
    for tokens in MS:
        PATHS[(0, 0, tokens)] = "?"
        x = torch.randn(tokens, 7168, generator=gen).to(torch.bfloat16)
        routes = [
            torch.stack([torch.randperm(experts, generator=gen)[:8] for _ in range(tokens)]) for _ in range(iters + 2)
        ]
        weights = torch.rand(tokens, 8, generator=gen)
        t = median_time(lambda i, x=x, r=routes, w=weights: layer.routed(x, r[i], w, threads=threads), iters)
        busiest = statistics.median(int(torch.bincount(r.flatten()).max()) for r in routes)
        PATHS[(0, 0, tokens)] = moe_path(None, int(busiest), 7168, 2048, threads).name
        selected = statistics.mean(len(torch.unique(r)) for r in routes) * per_expert
        results[tokens] = (t, int(selected))
    return results


def print_linear(shape: tuple[int, int], res: dict[str, dict[int, tuple[float, int]]], bw: float) -> None:
    n, k = shape
    print(f"\nW4A16 linear {n}x{k} (N x K); read bandwidth {bw / 1e9:.1f} GB/s")
    print(f"{'M':>3} {'method':<11} {'path':<12} {'time ms':>9} {'GB/s':>7} {'% bw':>6} {'vs bf16':>8}")
    for m in MS:
        bf16 = res["bf16"][m][0]
        for name, by_m in res.items():
            t, nbytes = by_m[m]
            path = PATHS[(n, k, m)] if name == "ours" else f"aten {torch.backends.cpu.get_cpu_capability()}"
            print(
                f"{m:>3} {name:<11} {path:<12} {t * 1e3:>9.3f} {nbytes / t / 1e9:>7.1f} "
                f"{100 * nbytes / t / bw:>5.0f}% {bf16 / t:>7.2f}x"
            )


def print_moe(res: dict[int, tuple[float, int]], bw: float) -> None:
    print(f"\nFused MoE 7168x2048 experts, top-8 (routed experts only); read bandwidth {bw / 1e9:.1f} GB/s")
    print(f"{'T':>3} {'path':<12} {'time ms':>9} {'sel. MB':>8} {'GB/s':>7} {'% bw':>6} {'vs ideal':>9}")
    for tokens, (t, nbytes) in res.items():
        ideal = nbytes / bw
        print(
            f"{tokens:>3} {PATHS[(0, 0, tokens)]:<12} {t * 1e3:>9.3f} {nbytes / 1e6:>8.1f} {nbytes / t / 1e9:>7.1f} "
            f"{100 * nbytes / t / bw:>5.0f}% {t / ideal:>8.2f}x"
        )


def plot(
    linear: dict[tuple[int, int], dict[str, dict[int, tuple[float, int]]]],
    moe: dict[int, tuple[float, int]],
    bw: float,
) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, (shape, res) in zip(axes, linear.items(), strict=False):
        for name, by_m in res.items():
            ax.plot(MS, [by_m[m][0] * 1e3 for m in MS], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="M", ylabel="ms", title=f"W4A16 linear {shape[0]}x{shape[1]}")
        ax.set_xticks(MS, [str(m) for m in MS])
        ax.legend()
    axes[2].plot(list(moe), [100 * b / t / bw for t, b in moe.values()], marker="o", label="ours")
    axes[2].set(xscale="log", xlabel="tokens", ylabel="% of read bandwidth", title="Fused MoE (selected experts)")
    axes[2].set_xticks(MS, [str(m) for m in MS])
    fig.tight_layout()
    OUT.mkdir(exist_ok=True)
    path = OUT / "kernels.png"
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--experts", type=int, default=48, help="experts in the MoE layer (Kimi has 384)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    target = max(2 * llc_bytes(), 256 << 20)
    print(
        f"CPU: {cpu_model()}; kernel features in use: {','.join(feature_names()) or 'none'}; torch ATen "
        f"capability: {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"threads {args.threads}; pools of {target / 2**20:.0f} MiB (2x LLC); path per row measured at first use")
    bw = read_bandwidth(args.threads, target)
    linear = {shape: bench_linear(*shape, args.iters, args.threads, target) for shape in SHAPES}
    moe = bench_moe(args.iters, args.threads, args.experts)
    bw = max(bw, read_bandwidth(args.threads, target))  # the better of before and after: the harder bar
    for shape, res in linear.items():
        print_linear(shape, res, bw)
    print_moe(moe, bw)
    path = plot(linear, moe, bw)
    if path:
        print(f"\nplot: {path}")


if __name__ == "__main__":
    main()
