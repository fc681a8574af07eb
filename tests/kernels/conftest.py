"""Kernel tests measure their dispatch choices into a temporary cache, never the user's data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmkeep.kernels.cpu import dispatch


@pytest.fixture(autouse=True, scope="session")
def _dispatch_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("int4-dispatch") / "int4_dispatch.json"
    dispatch.set_dispatcher(dispatch.Dispatcher(cache))
    yield cache
    dispatch.set_dispatcher(None)
