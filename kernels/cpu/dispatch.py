"""Which CPU path runs a W4A16 product: AMX, AVX-512 BF16 or FP16, portable C++, or plain torch."""

from __future__ import annotations

import json
from enum import IntEnum
from functools import lru_cache
from pathlib import Path as FsPath

import torch

from .extension import extension

_CONFIG = FsPath(__file__).resolve().parent.parent / "configs" / "cpu_w4a16.json"


class CpuPath(IntEnum):
    """Kernel paths; the values are the extension's path ids."""

    TORCH = 0  # plain torch: dequantize then matmul (no extension)
    GENERIC = 1  # portable C++ (AVX2 clone where available)
    AVX512 = 2  # AVX-512 BF16: vpermw nibble lookup + vdpbf16ps
    AMX = 3  # AMX BF16 tiles, scales folded into a bf16 B tile per group
    AVX512_FP16 = 4  # AVX-512 FP16: nibbles to exact fp16 + vfmadd231ph per group, fp32 across groups


@lru_cache(maxsize=1)
def available_paths() -> tuple[CpuPath, ...]:
    """Paths this machine can run, slowest first."""
    ext = extension()
    if ext is None:
        return (CpuPath.TORCH,)
    caps = int(ext.cpu_features())
    paths = [CpuPath.TORCH, CpuPath.GENERIC]
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


def choose_path(m: int) -> CpuPath:
    """The fastest available path for ``m`` rows: AVX-512 FP16 up to ``fp16_max_m`` rows, AMX from ``amx_min_m``
    rows up, else AVX-512 BF16, else C++."""
    paths = available_paths()
    if CpuPath.AVX512_FP16 in paths and m <= _config()["fp16_max_m"]:
        return CpuPath.AVX512_FP16
    if CpuPath.AMX in paths and m >= _config()["amx_min_m"]:
        return CpuPath.AMX
    if CpuPath.AVX512 in paths:
        return CpuPath.AVX512
    return paths[-1]


def resolve(path: CpuPath | None, m: int) -> CpuPath:
    """``path`` if this machine supports it (else a clear error); the automatic choice when ``None``."""
    if path is None:
        return choose_path(m)
    path = CpuPath(path)
    if path not in available_paths():
        raise ValueError(
            f"CPU path {path.name} is not available here; available: {[p.name for p in available_paths()]}"
        )
    return path


def num_threads(threads: int | None) -> int:
    """Threads to use: ``threads`` or torch's intra-op setting."""
    if threads is None:
        return torch.get_num_threads()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads
