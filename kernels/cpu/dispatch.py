"""Which CPU path runs a W4A16 product: AMX, AVX-512 BF16 or FP16, AVX2, portable C++, torch's int4 op or plain
torch; chosen by timing the candidates on the layer's shape and M bucket, once per machine (cached on disk).

``SWARMKEEP_INT4_PATH`` forces one path; ``SWARMKEEP_INT4_CPU_FEATURES`` hides CPU features (``avx2`` runs an
AVX-512 machine as an AVX2-only one), so that dispatch can be tested and measured for CPUs one does not have.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from enum import IntEnum
from functools import lru_cache
from pathlib import Path as FsPath

import torch

from .extension import extension

_CONFIG = FsPath(__file__).resolve().parent.parent / "configs" / "cpu_w4a16.json"
M_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# Feature bits of the extension's cpu_features(), by the names SWARMKEEP_INT4_CPU_FEATURES takes.
FEATURE_BITS = {"avx2": 1, "avx512": 2, "amx": 4, "avx512_fp16": 8}
# The path the feature bits alone would pick keeps its place unless another beats it by this much, so that timing
# noise on a busy machine does not flip a choice; torch's op is never beaten by a slower path.
_MARGIN = 0.9
_ROUNDS = 3  # interleaved timing rounds per M bucket


class CpuPath(IntEnum):
    """Kernel paths; values 1-5 are the extension's path ids."""

    TORCH = 0  # plain torch: dequantize then matmul (the reference; only when nothing else runs, or forced)
    GENERIC = 1  # portable C++
    AVX512 = 2  # AVX-512 BF16: vpternlogd nibble unpack + vdpbf16ps
    AMX = 3  # AMX BF16 tiles, scales folded into a bf16 B tile per group
    AVX512_FP16 = 4  # AVX-512 FP16: nibbles to exact fp16 + vfmadd231ph per group, fp32 across groups
    AVX2 = 5  # AVX2 + FMA: nibbles masked in place, vcvtdq2ps, fp32 FMA; unpacked to L1 from 3 rows up
    TORCH_INT4 = 6  # torch's _weight_int4pack_mm_for_cpu on a copy of the weight in torch's layout


def _settings_value(name: str) -> str:
    from swarmkeep.settings import get_settings

    return str(getattr(get_settings(), name, "") or "").strip().lower()


def feature_mask(spec: str) -> int:
    """The feature bits a ``SWARMKEEP_INT4_CPU_FEATURES`` value allows: empty or ``all`` = every bit."""
    spec = spec.strip().lower()
    if spec in ("", "all"):
        return -1
    mask = 0
    for name in filter(None, (part.strip() for part in spec.split(","))):
        if name not in FEATURE_BITS and name != "none":
            raise ValueError(
                f"SWARMKEEP_INT4_CPU_FEATURES names {name!r}; use a comma list of {', '.join(FEATURE_BITS)}, "
                "'none' or empty (all the CPU has)"
            )
        mask |= FEATURE_BITS.get(name, 0)
    return mask


_feature_spec: str | None = None  # set by limit_features; None: the setting


def limit_features(spec: str | None) -> None:
    """Use only the named CPU features from now on (``None``: back to the setting); clears cached choices."""
    global _feature_spec
    _feature_spec = spec
    _features.cache_clear()
    available_paths.cache_clear()
    _dispatcher.cache_clear()


@lru_cache(maxsize=1)
def _features() -> int:
    ext = extension()
    if ext is None:
        return 0
    spec = _feature_spec if _feature_spec is not None else _settings_value("int4_cpu_features")
    return int(ext.limit_features(feature_mask(spec)))


def cpu_features() -> int:
    """The feature bits in use (after SWARMKEEP_INT4_CPU_FEATURES): 1 AVX2+FMA, 2 AVX-512 BF16, 4 AMX, 8 FP16."""
    return _features()


def feature_names() -> list[str]:
    """The features in use, by name, for logs and benchmark tables."""
    return [name for name, bit in FEATURE_BITS.items() if cpu_features() & bit]


def torch_int4_available() -> bool:
    """Whether this torch has the CPU int4 weight-only matmul."""
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")


@lru_cache(maxsize=1)
def available_paths() -> tuple[CpuPath, ...]:
    """Paths this machine can run, roughly slowest first."""
    paths = [CpuPath.TORCH]
    if torch_int4_available():
        paths.append(CpuPath.TORCH_INT4)
    if extension() is None:
        return tuple(paths)
    caps = cpu_features()
    paths.append(CpuPath.GENERIC)
    if caps & 1:
        paths.append(CpuPath.AVX2)
    if caps & 2:
        paths.append(CpuPath.AVX512)
    if caps & 8:
        paths.append(CpuPath.AVX512_FP16)
    if caps & 4:
        paths.append(CpuPath.AMX)
    return tuple(paths)


@lru_cache(maxsize=1)
def _config() -> dict[str, int]:
    return {key: int(value) for key, value in json.loads(_CONFIG.read_text())["default"].items()}


def heuristic_path(m: int) -> CpuPath:
    """The path feature bits alone pick for ``m`` rows: AVX-512 FP16 up to ``fp16_max_m`` rows, AMX from
    ``amx_min_m`` rows up, else AVX-512 BF16, else AVX2, else C++, else torch's int4 op."""
    paths = available_paths()
    if CpuPath.AVX512_FP16 in paths and m <= _config()["fp16_max_m"]:
        return CpuPath.AVX512_FP16
    if CpuPath.AMX in paths and m >= _config()["amx_min_m"]:
        return CpuPath.AMX
    for path in (CpuPath.AVX512, CpuPath.AVX2, CpuPath.GENERIC, CpuPath.TORCH_INT4):
        if path in paths:
            return path
    return CpuPath.TORCH


def m_bucket(m: int) -> int:
    """The M bucket a row count is timed at: the next power of two, at most 64."""
    return next((b for b in M_BUCKETS if m <= b), M_BUCKETS[-1])


def candidates() -> list[CpuPath]:
    """Paths the measured dispatch times: every available one but the plain-torch reference."""
    return [p for p in available_paths() if p != CpuPath.TORCH] or [CpuPath.TORCH]


def pick(times: dict[CpuPath, float], default: CpuPath) -> CpuPath:
    """The fastest of ``times``; ``default`` unless beaten by the margin; never slower than torch's int4 op."""
    best = min(times, key=lambda p: times[p])
    choice = default if default in times and times[best] >= _MARGIN * times[default] else best
    torch_op = times.get(CpuPath.TORCH_INT4)
    if torch_op is not None and times[choice] > torch_op:
        choice = CpuPath.TORCH_INT4
    return choice


Timer = Callable[[CpuPath, int, int, int, int], float]  # (path, n, k, m, threads) -> seconds per call


def machine_key() -> str:
    """What a cached choice is valid for: CPU model, the features in use, torch's version and CPU capability
    (``ATEN_CPU_CAPABILITY`` changes its int4 op), the kernels' source."""
    from .extension import _source_hash

    model = platform.processor() or platform.machine()
    try:
        for line in FsPath("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    aten = torch.backends.cpu.get_cpu_capability()
    return f"{model} | features {cpu_features()} | torch {torch.__version__} {aten} | kernels {_source_hash()}"


class Dispatcher:
    """Times each candidate path on a shape's M buckets on first use, keeps the fastest, and caches the choice
    per machine in a JSON file."""

    def __init__(self, cache_file: FsPath | None, timer: Timer | None = None, forced: CpuPath | None = None) -> None:
        self.cache_file = cache_file
        self.timer = timer or time_path
        self.forced = forced
        self._choices: dict[str, dict[str, str]] = {}
        self._loaded = False

    def _key(self, n: int, k: int, threads: int) -> str:
        return f"{n}x{k} threads {threads}"

    def _load(self) -> dict[str, dict[str, dict[str, str]]]:
        if self.cache_file is None or not self.cache_file.exists():
            return {}
        try:
            data = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return {}  # a damaged cache is measured again
        return data if isinstance(data, dict) else {}

    def _store(self) -> None:
        if self.cache_file is None:
            return
        data = self._load()
        data.setdefault(machine_key(), {}).update(self._choices)
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.cache_file)

    def measure(self, n: int, k: int, threads: int) -> dict[str, str]:
        """Time every candidate on every M bucket of an [n, k] weight; {bucket: path name}. The portable C++
        path, once 3x slower than the best, is not timed at larger buckets (it only falls further behind; AMX,
        which pads rows to 16, gains on the others as M grows, so it is always timed)."""
        paths = candidates()
        choice: dict[str, str] = {}
        try:
            for m in M_BUCKETS:
                # Interleaved rounds, best of each: a burst of load on a shared machine then hits every path.
                rounds = [{p: self.timer(p, n, k, m, threads) for p in paths} for _ in range(_ROUNDS)]
                times = {p: min(r[p] for r in rounds) for p in paths}
                choice[str(m)] = pick(times, heuristic_path(m)).name
                best = min(times.values())
                paths = [p for p in paths if p != CpuPath.GENERIC or times[p] <= 3 * best]
        finally:
            _pools.clear()
        return choice

    def choose(self, n: int, k: int, m: int, threads: int) -> CpuPath:
        """The path for ``m`` rows of an [n, k] weight on ``threads`` threads."""
        if self.forced is not None:
            return self.forced
        key = self._key(n, k, threads)
        if not self._loaded:
            self._choices.update(self._load().get(machine_key(), {}))
            self._loaded = True
        if key not in self._choices:
            self._choices[key] = self.measure(n, k, threads)
            self._store()
        name = self._choices[key].get(str(m_bucket(m)), "")
        path = CpuPath[name] if name in CpuPath.__members__ else None
        return path if path in available_paths() else heuristic_path(m)


def forced_path() -> CpuPath | None:
    """The ``SWARMKEEP_INT4_PATH`` setting as a path (``None``: measured), checked against this machine."""
    name = _settings_value("int4_path")
    if name in ("", "auto"):
        return None
    if name.upper() not in CpuPath.__members__:
        raise ValueError(f"SWARMKEEP_INT4_PATH={name!r}: use auto or one of {', '.join(CpuPath.__members__)}")
    return check_available(CpuPath[name.upper()])


def cache_file() -> FsPath:
    """The dispatch cache: ``<data dir>/kernels/int4_dispatch.json``."""
    from swarmkeep.settings import get_settings

    return FsPath(get_settings().data_dir) / "kernels" / "int4_dispatch.json"


@lru_cache(maxsize=1)
def _dispatcher() -> Dispatcher:
    return Dispatcher(cache_file(), forced=forced_path())


_installed: Dispatcher | None = None  # set_dispatcher's, for tests


def dispatcher() -> Dispatcher:
    """The process-wide dispatcher (settings read once; :func:`limit_features` resets it)."""
    return _installed if _installed is not None else _dispatcher()


def set_dispatcher(installed: Dispatcher | None) -> None:
    """Use ``installed`` instead of the settings' dispatcher (``None``: back to it); a hook for tests."""
    global _installed
    _installed = installed


def check_available(path: CpuPath) -> CpuPath:
    """``path`` if this machine runs it, else a clear error."""
    path = CpuPath(path)
    if path not in available_paths():
        raise ValueError(
            f"CPU path {path.name} is not available here; available: {[p.name for p in available_paths()]}"
        )
    return path


def choose_path(m: int, shape: tuple[int, int] | None = None, threads: int | None = None) -> CpuPath:
    """The path for ``m`` rows: measured for an [n, k] ``shape``, by feature bits without one."""
    if shape is None:
        return dispatcher().forced or heuristic_path(m)
    return dispatcher().choose(shape[0], shape[1], m, num_threads(threads))


def resolve(path: CpuPath | None, m: int, shape: tuple[int, int] | None = None, threads: int | None = None) -> CpuPath:
    """``path`` if this machine supports it (else a clear error); the dispatcher's choice when ``None``."""
    if path is None:
        return choose_path(m, shape, threads)
    return check_available(path)


def num_threads(threads: int | None) -> int:
    """Threads to use: ``threads`` or torch's intra-op setting."""
    if threads is None:
        return torch.get_num_threads()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


_pools: dict[tuple[int, int], list[object]] = {}  # weights time_path reuses while one shape is measured


def time_path(path: CpuPath, n: int, k: int, m: int, threads: int, pool_bytes: int = 64 << 20) -> float:
    """Median seconds of one ``m``-row product on a random [n, k] weight, over a pool of copies of up to
    ``pool_bytes`` (two to four), each read once untimed first."""
    from ..format import random_int4_weight
    from .layout import BlockedInt4, to_blocked
    from .linear import w4a16_linear

    gen = torch.Generator().manual_seed(n * 131 + k + m)
    if (n, k) not in _pools:
        copies = max(2, min(4, pool_bytes // max(1, n * k // 2)))
        _pools[(n, k)] = [to_blocked(random_int4_weight(n, k, gen)) for _ in range(copies)]
    pool = [w for w in _pools[(n, k)] if isinstance(w, BlockedInt4)]
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    for weight in pool:  # untimed: builds torch's copy too, and reads every copy once
        w4a16_linear(x, weight, path=path, threads=threads)
    times = []
    for i in range(max(5, len(pool))):
        start = time.perf_counter()
        w4a16_linear(x, pool[i % len(pool)], path=path, threads=threads)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
