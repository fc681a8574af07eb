"""CPU W4A16 kernels: a C++ extension (AMX, AVX-512 BF16, portable paths) built on first use."""

from .dispatch import CpuPath, available_paths, choose_path
from .layout import BlockedInt4, from_blocked, to_blocked
from .linear import CpuW4A16Linear, w4a16_linear
from .moe import CpuW4A16MoE

__all__ = [
    "BlockedInt4",
    "CpuPath",
    "CpuW4A16Linear",
    "CpuW4A16MoE",
    "available_paths",
    "choose_path",
    "from_blocked",
    "to_blocked",
    "w4a16_linear",
]
