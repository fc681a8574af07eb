"""GPU benchmark (prepared for an H200; not run on the CPU machines): the Triton W4A16 GEMM and fused MoE
against a bf16 matmul at Kimi shapes, M = 1..128. Target at M <= 16: at least 3.3x bf16.

Run on a CUDA machine with Triton: python bench/gpu_kernels.py [--iters 50]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

SHAPES = [(2048, 7168), (7168, 2048)]  # (N, K)
MS = [1, 2, 4, 8, 16, 32, 64, 128]
OUT = Path(__file__).resolve().parent / "out"


def cuda_time(fn, iters: int) -> float:
    """Median seconds per call, timed with CUDA events after warm-up (first call compiles)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def rotating(fn):
    """A no-argument call that passes 0, 1, 2, ... to ``fn`` (to rotate through a pool of weights)."""
    count = iter(range(10**9))
    return lambda: fn(next(count))


def main() -> None:
    """Benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU (this script is for the lent H200)")
    from swarmkeep.kernels.format import random_int4_weight
    from swarmkeep.kernels.gpu import to_triton_layout
    from swarmkeep.kernels.gpu.ops import TritonW4A16MoE, triton_w4a16_linear
    from swarmkeep.kernels.moe_weights import random_moe
    from swarmkeep.kernels.reference import moe_combine_ref, w4a16_linear_ref
    from swarmkeep.kernels.routing import RoutingConfig

    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(dev)}")
    # The L2 is 50-60 MB: a pool of copies larger than it keeps the weights streaming from HBM.
    rows = []
    for n, k in SHAPES:
        pool_n = 32
        cpu_weights = [random_int4_weight(n, k) for _ in range(pool_n)]
        int4 = [to_triton_layout(w).to(dev) for w in cpu_weights]
        dense = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) for _ in range(8)]
        int4_bytes = cpu_weights[0].nbytes
        # Correctness once per shape, against the reference computed on the GPU in fp32.
        x = torch.randn(3, k, device=dev).to(torch.bfloat16)
        ref = w4a16_linear_ref(x.cpu(), cpu_weights[0]).to(dev)
        torch.testing.assert_close(triton_w4a16_linear(x, int4[0]), ref, atol=3e-2, rtol=3e-2)
        for m in MS:
            x = torch.randn(m, k, device=dev).to(torch.bfloat16)
            t_int4 = cuda_time(rotating(lambda i, x=x, w=int4: triton_w4a16_linear(x, w[i % len(w)])), args.iters)
            t_bf16 = cuda_time(
                rotating(lambda i, x=x, w=dense: torch.nn.functional.linear(x, w[i % len(w)])), args.iters
            )
            rows.append((f"{n}x{k}", m, t_int4, t_bf16, int4_bytes))
    print(f"{'shape':<10} {'M':>4} {'int4 us':>9} {'bf16 us':>9} {'speed-up':>9} {'int4 TB/s':>10}")
    for shape, m, ti, tb, nbytes in rows:
        flag = "" if m > 16 or tb / ti >= 3.3 else "  (below 3.3x target)"
        speed = f"{tb / ti:>8.2f}x {nbytes / ti / 1e12:>10.2f}"
        print(f"{shape:<10} {m:>4} {ti * 1e6:>9.1f} {tb * 1e6:>9.1f} {speed}{flag}")

    moe = random_moe(64, 7168, 2048, seed=0)
    layer = TritonW4A16MoE(moe, RoutingConfig(top_k=8), device=dev)
    print(f"\n{'tokens':>6} {'fused MoE us':>13} {'GB/s (selected experts)':>24}")
    for tokens in MS:
        x = torch.randn(tokens, 7168, device=dev).to(torch.bfloat16)
        ids = torch.stack([torch.randperm(64, device=dev)[:8] for _ in range(tokens)])
        weights = torch.rand(tokens, 8, device=dev)
        if tokens == 1:
            ref = moe_combine_ref(x.cpu(), moe, ids.cpu(), weights.cpu()).to(dev)
            torch.testing.assert_close(layer.routed(x, ids, weights), ref, atol=5e-2, rtol=5e-2)
        t = cuda_time(lambda x=x, ids=ids, w=weights: layer.routed(x, ids, w), args.iters)
        selected = len(torch.unique(ids)) * moe.expert_nbytes(0)
        print(f"{tokens:>6} {t * 1e6:>13.1f} {selected / t / 1e9:>24.0f}")


if __name__ == "__main__":
    main()
