"""Run untrusted Python in a sandbox: no network, own PID and mount namespaces, resource limits, a wall clock.

How: `sandbox_launcher.py` (stdlib only) enters new network, mount and PID namespaces, shows the program an
empty tmpfs in place of home and temp folders with only the interpreter (read-only) and the job's scratch folder
(read-write) bound back, sets RLIMIT_AS/CPU/NPROC/FSIZE/NOFILE, forbids new privileges and, when the worker is
root, switches to an unprivileged uid chosen per scratch folder (root ignores RLIMIT_NPROC). When not root it uses
an unprivileged user namespace instead. A probe checks once per process that a connect really fails inside; if it
does not, runs are refused, unless `require_isolation` is off (then: resource limits only, for development).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
SETUP_FAILED = 125
# Isolated means: a fresh network namespace (loopback only, and down) where an outbound connect fails.
PROBE_CODE = (
    "import socket\n"
    "names = [name for _, name in socket.if_nameindex()]\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
    "s.settimeout(2)\n"
    "try:\n"
    "    s.connect(('1.1.1.1', 53))\n"
    "except OSError:\n"
    "    print('isolated' if names == ['lo'] else f'interfaces {names}')\n"
    "else:\n"
    "    print('connected')\n"
)


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run_python call; the defaults suit small scripts and pandas on a shared worker."""

    memory_bytes: int = 1 << 30
    cpu_seconds: int = 20
    wall_seconds: float = 30.0
    max_processes: int = 32
    max_file_bytes: int = 50 << 20
    max_open_files: int = 256
    max_output_bytes: int = 32_000
    tmpfs_bytes: int = 64 << 20
    uid_base: int = 200_000
    uid_span: int = 100_000
    require_isolation: bool = True
    hidden_paths: tuple[str, ...] = ("/root", "/home", "/tmp", "/var/tmp", "/dev/shm", "/run")
    python: str | None = None


@dataclass
class SandboxOutcome:
    """What a sandboxed run did: exit status, captured output, and a plain-words verdict when it went wrong."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    output_truncated: bool = False
    verdict: str = ""
    isolation: str = ""

    @property
    def ok(self) -> bool:
        """True when the program ran to the end and exited 0."""
        return self.exit_code == 0 and not self.timed_out


class SandboxUnavailableError(RuntimeError):
    """No network isolation can be had on this machine, and the limits require it."""


_isolation: str | None = None
_isolation_lock = asyncio.Lock()
_workdir_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def interpreter() -> str:
    """The Python the sandbox runs: this worker's own (its virtual environment, so pandas is there)."""
    if sys.prefix != sys.base_prefix:
        # Through the environment's real folder, so it still finds pyvenv.cfg when symlinked folders are hidden.
        return str(Path(sys.prefix).resolve() / "bin" / Path(sys.executable).name)
    return str(Path(sys.executable).resolve())


def _outermost(paths: list[str]) -> list[str]:
    """The paths that lie inside none of the others."""
    unique = sorted(set(paths), key=len)
    kept: list[str] = []
    for path in unique:
        if not any(path == top or path.startswith(top.rstrip("/") + "/") for top in kept):
            kept.append(path)
    return kept


def _closed_ancestor(path: str) -> str | None:
    """The outermost folder above `path` that other users cannot pass through, if any."""
    current = Path("/")
    for part in Path(path).parts[1:-1]:
        current = current / part
        try:
            if not current.stat().st_mode & 0o001:
                return str(current)
        except OSError:
            return None
    return None


def sandbox_uid(workdir: Path, limits: SandboxLimits) -> int:
    """The unprivileged uid a job's programs run as (one per scratch folder, so jobs cannot signal each other)."""
    return limits.uid_base + zlib.crc32(str(workdir.resolve()).encode()) % limits.uid_span


def _launch_config(mode: str, python: str, workdir: Path, limits: SandboxLimits) -> dict[str, object]:
    real_python = os.path.realpath(python)
    expose_ro = _outermost(
        [os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), os.path.dirname(real_python)]
        + ([os.path.dirname(python)] if limits.python else [])
    )
    expose_rw = [str(workdir.resolve())]
    hide = [os.path.realpath(p) for p in limits.hidden_paths if os.path.isdir(p)]
    if mode == "root":
        hide += [a for a in (_closed_ancestor(p) for p in expose_ro + expose_rw) if a]
    uid = sandbox_uid(workdir, limits)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": expose_rw[0],
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib",
    }
    return {
        "mode": mode,
        "uid": uid,
        "gid": uid,
        "hide": _outermost(hide),
        "expose_ro": expose_ro,
        "expose_rw": expose_rw,
        "tmpfs_bytes": limits.tmpfs_bytes,
        "cwd": expose_rw[0],
        "limits": {
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "max_file_bytes": limits.max_file_bytes,
            "max_open_files": limits.max_open_files,
            "max_processes": limits.max_processes,
        },
        "argv": [python, "-I", "-"],
        "env": env,
    }


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Hand the scratch folder to the sandbox uid (and back afterwards); links are never followed."""
    os.lchown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, gid)


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, bool]:
    """Everything up to `cap` bytes; the rest is read and dropped so the program never blocks on a full pipe."""
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        truncated = truncated or len(chunk) > room
    return bytes(kept), truncated


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _launch(mode: str, code: str, workdir: Path, limits: SandboxLimits) -> SandboxOutcome:
    config = _launch_config(mode, limits.python or interpreter(), workdir, limits)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, cwd=str(workdir), env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    readers = asyncio.gather(
        _read_capped(process.stdout, limits.max_output_bytes), _read_capped(process.stderr, limits.max_output_bytes)
    )
    timed_out = False
    try:
        if process.stdin is not None:
            try:
                process.stdin.write(code.encode())
                await process.stdin.drain()
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:
            await asyncio.wait_for(process.wait(), limits.wall_seconds)
        except TimeoutError:
            timed_out = True
    finally:
        # The launcher's death takes the PID namespace (and every process the program started) with it.
        _kill_group(process.pid)
        if process.returncode is None:
            await process.wait()
    try:
        (out, out_cut), (err, err_cut) = await asyncio.wait_for(readers, 5.0)
    except TimeoutError:
        readers.cancel()
        (out, out_cut), (err, err_cut) = (b"", True), (b"output could not be collected", True)
    outcome = SandboxOutcome(
        exit_code=process.returncode if process.returncode is not None else -1,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        timed_out=timed_out,
        output_truncated=out_cut or err_cut,
        isolation=mode,
    )
    outcome.verdict = explain(outcome, limits)
    return outcome


def explain(outcome: SandboxOutcome, limits: SandboxLimits) -> str:
    """A plain-words reason why a run failed (empty when it succeeded or simply raised an exception)."""
    code, err = outcome.exit_code, outcome.stderr
    if outcome.timed_out:
        return f"stopped: it ran past the wall-clock limit of {limits.wall_seconds:g} s; do less per call"
    if code == SETUP_FAILED and "sandbox setup failed" in err:
        return "the sandbox could not be set up: " + err.strip().splitlines()[-1]
    if code in (128 + signal.SIGXCPU, 128 + signal.SIGKILL):
        return f"killed: it used up the CPU-time limit of {limits.cpu_seconds} s; do less per call"
    if "MemoryError" in err or "Cannot allocate memory" in err or "std::bad_alloc" in err:
        return f"out of memory: the sandbox allows {limits.memory_bytes >> 20} MiB; work on smaller data"
    if "BlockingIOError: [Errno 11]" in err or "can't start new thread" in err:
        return f"process limit reached: the sandbox allows {limits.max_processes} processes and threads"
    if "File too large" in err:
        return f"file-size limit reached: the sandbox allows files up to {limits.max_file_bytes >> 20} MiB"
    if code > 128:
        return f"killed by signal {signal.Signals(code - 128).name}"
    return ""


async def isolation_mode(limits: SandboxLimits) -> str:
    """`root` or `userns` once a probe has shown that a connect fails inside; `none` if allowed and neither works."""
    global _isolation
    async with _isolation_lock:
        if _isolation is None:
            # Root never falls back to a user namespace: mapped to itself it would still own every root file.
            candidates = ["root"] if os.geteuid() == 0 else ["userns"]
            problems: list[str] = []
            for mode in candidates:
                with tempfile.TemporaryDirectory(prefix="swarmkeep-probe-") as folder:
                    outcome = await _run_in(mode, PROBE_CODE, Path(folder), SandboxLimits(wall_seconds=15))
                if outcome.ok and outcome.stdout.strip() == "isolated":
                    _isolation = mode
                    break
                problems.append(f"{mode}: {outcome.verdict or outcome.stdout.strip() or outcome.stderr.strip()}")
            else:
                _isolation = "none: " + "; ".join(problems)
    if _isolation.startswith("none"):
        if limits.require_isolation:
            raise SandboxUnavailableError(
                "run_python is unavailable: this worker cannot cut the sandbox off the network "
                f"({_isolation[6:]}). Run the worker as root or with unprivileged user namespaces enabled "
                "(in Docker: --cap-add SYS_ADMIN and a seccomp profile that allows unshare)."
            )
        return "none"
    return _isolation


async def _run_in(mode: str, code: str, workdir: Path, limits: SandboxLimits) -> SandboxOutcome:
    if mode != "root":
        return await _launch(mode, code, workdir, limits)
    uid = sandbox_uid(workdir, limits)
    await asyncio.to_thread(_chown_tree, workdir, uid, uid)
    try:
        return await _launch(mode, code, workdir, limits)
    finally:
        await asyncio.to_thread(_chown_tree, workdir, os.getuid(), os.getgid())


async def run_sandboxed(code: str, workdir: Path, limits: SandboxLimits) -> SandboxOutcome:
    """Run `code` with `python -I` in the sandbox, `workdir` as its current folder; never raises for the program."""
    mode = await isolation_mode(limits)
    workdir.mkdir(parents=True, exist_ok=True)
    lock = _workdir_locks.setdefault(str(workdir.resolve()), asyncio.Lock())
    async with lock:  # one program per scratch folder at a time: ownership is handed over and back
        return await _run_in(mode, code, workdir, limits)
