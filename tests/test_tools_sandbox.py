"""run_python's sandbox: it computes, it cannot reach the network, and runaway programs are stopped."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmkeep.activities.tools import SandboxLimits, ToolContext, toolset_for
from swarmkeep.activities.tools.sandbox import isolation_mode

LIMITS = SandboxLimits(wall_seconds=8, cpu_seconds=4, memory_bytes=768 << 20, max_processes=24)


def _context(tmp_path: Path, limits: SandboxLimits = LIMITS) -> ToolContext:
    return ToolContext(job_id="job-1", scratch_dir=tmp_path / "scratch", sandbox=limits)


async def _run(context: ToolContext, code: str) -> tuple[str, bool, list[str]]:
    result = await toolset_for("coder").call("run_python", {"code": code}, context)
    return result.content, result.is_error, result.artifacts


def _processes_of(scratch: Path) -> list[int]:
    """Host pids of the bwrap that holds `scratch` and of sandboxed programs (`python -I -` in a PID namespace)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                nspid = next(line for line in Path(f"/proc/{entry}/status").read_text().splitlines() if "NSpid" in line)
            except (OSError, StopIteration):
                continue
            program = argv[1:3] == [b"-I", b"-"] and len(nspid.split()) > 2
            if program or (b"bwrap" in argv[0] and str(scratch.resolve()).encode() in argv):
                found.append(int(entry))
    return found


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    """A TCP server on all interfaces, and this machine's non-loopback address (or loopback if it has none)."""
    server = socket.create_server(("0.0.0.0", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
                connection.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the outbound interface
            address = probe.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    yield address, port
    stop.set()
    thread.join()
    server.close()


async def test_isolation_is_available_here() -> None:
    assert (await isolation_mode(LIMITS)).startswith("bwrap")


async def test_computes_a_result_and_files_become_artifacts(tmp_path: Path) -> None:
    context = _context(tmp_path)
    content, is_error, artifacts = await _run(
        context,
        "import pandas as pd\n"
        "frame = pd.DataFrame({'x': [1, 2, 3]})\n"
        "frame.to_csv('numbers.csv', index=False)\n"
        "print('sum', frame.x.sum() * 7)\n",
    )
    assert not is_error, content
    assert "sum 42" in content
    assert artifacts == ["numbers.csv"]
    assert (context.scratch_dir / "numbers.csv").read_text().split() == ["x", "1", "2", "3"]
    assert (context.scratch_dir / "numbers.csv").stat().st_uid == os.getuid()  # handed back to the worker


async def test_network_is_unreachable_inside(tmp_path: Path, listener: tuple[str, int]) -> None:
    address, port = listener
    with socket.create_connection((address, port), timeout=5):
        pass  # reachable from the worker itself...
    code = (
        "import socket\n"
        "print('interfaces', [name for _, name in socket.if_nameindex()])\n"
        f"for host in [{address!r}, '127.0.0.1', '1.1.1.1']:\n"
        "    try:\n"
        f"        socket.create_connection((host, {port}), timeout=3)\n"
        "        print('CONNECTED', host)\n"
        "    except OSError as error:\n"
        "        print('refused', host, error.errno)\n"
    )
    content, is_error, _ = await _run(_context(tmp_path), code)  # ...but not from the sandbox
    assert not is_error, content
    assert "interfaces ['lo']" in content
    assert "CONNECTED" not in content
    assert content.count("refused") == 3


async def test_memory_hog_is_stopped_with_a_clear_message(tmp_path: Path) -> None:
    content, is_error, _ = await _run(
        _context(tmp_path), "blocks = []\nwhile True:\n    blocks.append(bytearray(32 << 20))\n"
    )
    assert is_error
    assert "out of memory: the sandbox allows 768 MiB" in content


async def test_endless_loop_is_stopped(tmp_path: Path) -> None:
    content, is_error, _ = await _run(_context(tmp_path), "while True:\n    pass\n")
    assert is_error
    assert "CPU-time limit" in content or "wall-clock limit" in content


async def test_sleeping_program_is_stopped_by_the_wall_clock(tmp_path: Path) -> None:
    limits = SandboxLimits(wall_seconds=2)
    content, is_error, _ = await _run(_context(tmp_path, limits), "import time\ntime.sleep(60)\n")
    assert is_error
    assert "wall-clock limit of 2 s" in content


async def test_fork_bomb_is_contained_and_the_caller_goes_on(tmp_path: Path) -> None:
    context = _context(tmp_path, SandboxLimits(wall_seconds=4, cpu_seconds=3, max_processes=16))
    bomb = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    content, is_error, _ = await _run(context, bomb)
    assert is_error
    assert "limit" in content
    assert _processes_of(context.scratch_dir) == []  # every process the bomb made is gone with its PID namespace
    content, is_error, _ = await _run(context, "print(6 * 7)")
    assert not is_error and "42" in content


async def test_program_cannot_see_home_or_write_outside_scratch(tmp_path: Path) -> None:
    code = (
        "import os\n"
        "print('home', sorted(os.listdir('/root')) if os.path.isdir('/root') else None)\n"
        "try:\n"
        "    open('/etc/swarmkeep-escape', 'w')\n"
        "    print('WROTE')\n"
        "except OSError as error:\n"
        "    print('denied', error.errno)\n"
        "print('uid', os.getuid())\n"
    )
    content, is_error, _ = await _run(_context(tmp_path), code)
    assert not is_error, content
    assert "WROTE" not in content and "denied" in content
    assert not Path("/etc/swarmkeep-escape").exists()
    assert "uid 65534" in content


async def test_output_is_capped(tmp_path: Path) -> None:
    limits = SandboxLimits(max_output_bytes=1000)
    content, is_error, _ = await _run(_context(tmp_path, limits), "print('x' * 100_000)")
    assert not is_error
    assert "output cut at 1000 bytes" in content
    assert len(content) < 2000


async def test_without_isolation_runs_are_refused_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarmkeep.activities.tools import sandbox

    monkeypatch.setattr(sandbox, "_isolation", "none: bwrap: Creating new namespace failed: Operation not permitted")
    content, is_error, _ = await _run(_context(tmp_path), "print(1)")
    assert is_error
    assert "run_python is unavailable" in content and "Operation not permitted" in content and "bubblewrap" in content
