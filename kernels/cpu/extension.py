"""Builds (once, cached by source hash) and loads the C++ W4A16 CPU extension.

The build runs automatically on first use with the machine's C++ compiler through
``torch.utils.cpp_extension.load``; if that fails (no compiler, no headers) callers get ``None`` and a
warning, and fall back to the slower plain-torch path.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType

CSRC = Path(__file__).resolve().parent.parent / "csrc"
_SOURCES = ("w4a16_ops.cpp",)
_HEADERS = ("pool.h", "w4a16_tiles.h", "w4a16_avx2.h")
# -O3 only: ISA-specific code is chosen per function (target attributes) and dispatched at run time, so a
# cached build never depends on the machine that compiled it.
_CFLAGS = ["-O3", "-std=c++17", "-fno-math-errno"]


class ExtensionUnavailable(RuntimeError):
    """The C++ extension could not be built or loaded on this machine."""


def _source_hash() -> str:
    digest = hashlib.sha256()
    for name in _SOURCES + _HEADERS:
        digest.update((CSRC / name).read_bytes())
    digest.update(" ".join(_CFLAGS).encode())
    return digest.hexdigest()[:16]


def build_dir() -> Path:
    """The build cache: ``$SWARMKEEP_KERNEL_CACHE`` or ``~/.cache/swarmkeep/kernels``, per source hash."""
    root = os.environ.get("SWARMKEEP_KERNEL_CACHE") or Path.home() / ".cache" / "swarmkeep" / "kernels"
    return Path(root) / f"w4a16-{_source_hash()}"


def load_extension() -> ModuleType:
    """Build if needed and import the extension; raise :class:`ExtensionUnavailable` with the reason."""
    from torch.utils import cpp_extension

    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return cpp_extension.load(
            name=f"swarmkeep_w4a16_{_source_hash()}",
            sources=[str(CSRC / name) for name in _SOURCES],
            extra_cflags=_CFLAGS,
            extra_include_paths=[str(CSRC)],
            build_directory=str(directory),
            verbose=False,
        )
    except Exception as exc:  # compiler missing, headers missing, build error: all mean "no fast path"
        raise ExtensionUnavailable(
            f"could not build the W4A16 CPU extension in {directory}: {exc}. Install a C++17 compiler "
            "(g++ >= 11) and ninja, or use the slower plain-torch path"
        ) from exc


@lru_cache(maxsize=1)
def extension() -> ModuleType | None:
    """The loaded extension, or ``None`` (with one warning) when it cannot be built here."""
    try:
        return load_extension()
    except ExtensionUnavailable as exc:
        warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
        return None
