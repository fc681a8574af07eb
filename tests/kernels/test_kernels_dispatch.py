"""The measured CPU dispatch: fastest path per shape and M bucket, never slower than torch's int4 op, cached per
machine; the forced path; hiding CPU features. Times come from a fake timer: nothing here asserts wall-clock time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from swarmkeep.kernels.cpu import (
    CpuPath,
    CpuW4A16MoE,
    available_paths,
    dispatch,
    limit_features,
    to_blocked,
    w4a16_linear,
)
from swarmkeep.kernels.cpu.moe import moe_path
from swarmkeep.kernels.format import random_int4_weight
from swarmkeep.kernels.moe_weights import random_moe
from swarmkeep.kernels.reference import w4a16_linear_ref
from swarmkeep.kernels.routing import RoutingConfig


class FakeTimer:
    """Seconds per path from a table (per M bucket where the value is a dict), counting calls."""

    def __init__(self, table: dict[CpuPath, float | dict[int, float]]) -> None:
        self.table = table
        self.calls = 0

    def __call__(self, path: CpuPath, n: int, k: int, m: int, threads: int) -> float:
        self.calls += 1
        value = self.table.get(path, 1.0)
        return value[m] if isinstance(value, dict) else value


@pytest.fixture
def avx2_only() -> Iterator[None]:
    limit_features("avx2")
    yield
    limit_features(None)


def test_pick_fastest_but_never_slower_than_torch() -> None:
    assert dispatch.pick({CpuPath.GENERIC: 3.0, CpuPath.AVX2: 1.0, CpuPath.TORCH_INT4: 2.0}, CpuPath.AVX2) == (
        CpuPath.AVX2
    )
    # The feature-bit default loses to torch's op: torch's op runs.
    assert dispatch.pick({CpuPath.AVX2: 2.5, CpuPath.TORCH_INT4: 2.0}, CpuPath.AVX2) == CpuPath.TORCH_INT4
    # Within the noise margin the default keeps its place, but only while it is not slower than torch's op.
    times = {CpuPath.AVX2: 1.05, CpuPath.AVX512: 1.0, CpuPath.TORCH_INT4: 2.0}
    assert dispatch.pick(times, CpuPath.AVX2) == CpuPath.AVX2
    assert dispatch.pick({CpuPath.AVX2: 1.05, CpuPath.TORCH_INT4: 1.0}, CpuPath.AVX2) == CpuPath.TORCH_INT4


def test_avx2_only_machine_offers_avx2_and_torch(avx2_only: None) -> None:
    paths = available_paths()
    assert CpuPath.AVX2 in paths and CpuPath.TORCH_INT4 in paths
    assert not {CpuPath.AVX512, CpuPath.AVX512_FP16, CpuPath.AMX} & set(paths)
    assert dispatch.feature_names() == ["avx2"]
    assert dispatch.heuristic_path(1) == CpuPath.AVX2


def test_dispatch_measures_once_per_shape_and_caches(tmp_path: Path, avx2_only: None) -> None:
    cache = tmp_path / "int4_dispatch.json"
    avx2 = {**dict.fromkeys(dispatch.M_BUCKETS, 1.0), 16: 3.0}
    timer = FakeTimer({CpuPath.GENERIC: 9.0, CpuPath.AVX2: avx2, CpuPath.TORCH_INT4: 2.0})
    first = dispatch.Dispatcher(cache, timer)
    assert first.choose(64, 256, 1, 2) == CpuPath.AVX2
    assert first.choose(64, 256, 12, 2) == CpuPath.TORCH_INT4  # bucket 16: AVX2 slower than torch's op there
    assert first.choose(64, 256, 500, 2) == CpuPath.AVX2  # beyond 64 rows: bucket 64
    calls = timer.calls
    assert calls > 0
    data = json.loads(cache.read_text())
    (machine,) = data
    assert "features 1 " in machine and data[machine]["64x256 threads 2"]["16"] == "TORCH_INT4"
    # A second process on the same machine reads the cache and times nothing.
    again = FakeTimer({})
    assert dispatch.Dispatcher(cache, again).choose(64, 256, 12, 2) == CpuPath.TORCH_INT4
    assert again.calls == 0
    # Another shape or thread count is measured on its own.
    first.choose(64, 512, 1, 2)
    first.choose(64, 256, 1, 1)
    assert timer.calls > calls


def test_dispatch_cache_is_per_cpu_feature_set(tmp_path: Path) -> None:
    cache = tmp_path / "int4_dispatch.json"
    dispatch.Dispatcher(cache, FakeTimer({})).choose(32, 64, 1, 1)
    limit_features("avx2")
    try:
        timer = FakeTimer({})
        dispatch.Dispatcher(cache, timer).choose(32, 64, 1, 1)
        assert timer.calls > 0  # the AVX2-only view of this CPU is not the full one
    finally:
        limit_features(None)
    assert len(json.loads(cache.read_text())) == 2


def test_damaged_cache_is_measured_again(tmp_path: Path) -> None:
    cache = tmp_path / "int4_dispatch.json"
    cache.write_text("{not json")
    timer = FakeTimer({})
    dispatch.Dispatcher(cache, timer).choose(32, 64, 1, 1)
    assert timer.calls > 0 and json.loads(cache.read_text())


def test_forced_path_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmkeep.settings import get_settings

    def forced(value: str) -> CpuPath | None:
        monkeypatch.setenv("SWARMKEEP_INT4_PATH", value)
        get_settings.cache_clear()
        try:
            return dispatch.forced_path()
        finally:
            monkeypatch.delenv("SWARMKEEP_INT4_PATH")
            get_settings.cache_clear()

    assert forced("generic") == CpuPath.GENERIC
    assert forced("auto") is None
    with pytest.raises(ValueError, match="SWARMKEEP_INT4_PATH"):
        forced("fastest")
    assert dispatch.Dispatcher(None, FakeTimer({}), forced=CpuPath.GENERIC).choose(64, 256, 1, 2) == CpuPath.GENERIC


def test_feature_setting_names() -> None:
    assert dispatch.feature_mask("") == -1
    assert dispatch.feature_mask("avx2") == 1
    assert dispatch.feature_mask("avx2, avx512_fp16") == 9
    assert dispatch.feature_mask("none") == 0
    with pytest.raises(ValueError, match="avx2"):
        dispatch.feature_mask("sse9")


def test_linear_and_moe_follow_the_dispatch(avx2_only: None) -> None:
    # Whatever the measurement picks, it is an AVX2-machine path and the result matches the reference.
    weight = random_int4_weight(48, 128, torch.Generator().manual_seed(2), scale=128**-0.5)
    x = torch.randn(3, 128, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    assert dispatch.choose_path(3, (48, 128)) in (CpuPath.AVX2, CpuPath.GENERIC, CpuPath.TORCH_INT4)
    torch.testing.assert_close(w4a16_linear(x, to_blocked(weight)), w4a16_linear_ref(x, weight), atol=2e-2, rtol=2e-2)
    assert moe_path(None, 2, 64, 32, None) in (CpuPath.AVX2, CpuPath.GENERIC)
    assert moe_path(CpuPath.TORCH_INT4, 2, 64, 32, None) == CpuPath.AVX2  # torch's op has no fused MoE form
    moe = random_moe(4, 64, 32, seed=1)
    y = CpuW4A16MoE(moe, RoutingConfig(top_k=2))(x[:, :64].contiguous())
    assert y.shape == (3, 64)
