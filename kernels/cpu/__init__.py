"""CPU W4A16 kernels: a C++ extension (AMX, AVX-512 BF16/FP16, AVX2, portable paths) built on first use, and a
dispatch that times each path, torch's int4 op included, once per machine and shape."""

from .dispatch import CpuPath, available_paths, choose_path, feature_names, limit_features
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
    "feature_names",
    "from_blocked",
    "limit_features",
    "to_blocked",
    "w4a16_linear",
]
