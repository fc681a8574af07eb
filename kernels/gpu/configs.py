"""Block sizes for the Triton kernels, read from data files named by device, with a default."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

_DIR = Path(__file__).resolve().parent.parent / "configs"


def _device_key(device_name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in device_name).strip("_")


@lru_cache(maxsize=16)
def _load(kernel: str, device_name: str) -> dict[str, dict[str, dict[str, int]]]:
    for name in (f"{kernel}_{_device_key(device_name)}.json", f"{kernel}_default.json"):
        path = _DIR / name
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no block-size file for {kernel} in {_DIR}")


def block_config(kernel: str, device_name: str, n: int, k: int, m: int) -> dict[str, int]:
    """Block sizes for ``kernel`` ("triton_w4a16" or "triton_moe") at this shape: the entry for "NxK" if
    present, else "default"; within it, the smallest M bucket at or above ``m`` (the largest if none)."""
    table = _load(kernel, device_name)
    by_m = table.get(f"{n}x{k}", table["default"])
    buckets = sorted(int(b) for b in by_m)
    chosen = next((b for b in buckets if b >= m), buckets[-1])
    return dict(by_m[str(chosen)])
