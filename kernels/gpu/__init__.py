"""Triton GPU kernels over the INT4 format: a W4A16 GEMM and a fused MoE.

Importing this package never needs Triton or CUDA: the kernels load on first use, and :func:`triton_available`
says whether they can. Without a GPU they run under Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import importlib.util

from .layout import TritonInt4, to_triton_layout


def triton_available() -> bool:
    """Whether the ``triton`` package is importable here."""
    return importlib.util.find_spec("triton") is not None


__all__ = ["TritonInt4", "to_triton_layout", "triton_available"]
