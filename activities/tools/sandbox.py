"""Run untrusted Python in a bubblewrap sandbox built from nothing; where one cannot be had, refuse to run.

The sandbox: new user, mount, PID, network, IPC and UTS namespaces; an empty read-only root holding only the
interpreter, its libraries and the job's scratch folder (the one writable path, at /scratch); a fresh /proc; a
cleared environment; uid 65534 inside, no capabilities, no nested user namespaces; dies with the worker. Limits per
sandbox: `sandbox_launcher.py` sets rlimits inside and totals the memory of every process there, keeps the wall
clock and kills the whole PID namespace; the worker kills the whole bwrap on its own deadline too, and totals memory
and scratch-folder use from outside (through child cgroups with memory and pids limits where the machine allows:
cgroup v2 if delegated, else writable v1 hierarchies). Stdlib only, so an unprivileged worker can load it without
the project's dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarmkeep.activities.tools import sandbox_guard as guard

log = logging.getLogger(__name__)
LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
SETUP_FAILED = 125
WALL_CLOCK = 124
MEMORY_TOTAL = 123
PROCESS_TOTAL = 122
SANDBOX_UID = 65534
SCRATCH = "/scratch"
# How /proc is set up: "fresh" always. Tests set "host" to check that the launcher refuses a /proc that is not its
# own (what a fallback to the host's /proc would give).
PROC_MOUNT = "fresh"
PROBE_CODE = (
    "import os, socket\n"
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
    """Limits of one sandboxed run; memory, processes and disk count every process of the sandbox together."""

    memory_bytes: int = 1 << 30
    cpu_seconds: int = 20
    wall_seconds: float = 30.0
    max_processes: int = 32
    max_file_bytes: int = 50 << 20
    max_scratch_bytes: int = 512 << 20
    max_open_files: int = 256
    max_output_bytes: int = 32_000
    require_isolation: bool = True
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
    memory_exceeded: bool = False
    disk_exceeded: bool = False
    processes_exceeded: bool = False
    setup_failed: bool = False

    @property
    def ok(self) -> bool:
        """True when the program ran to the end and exited 0."""
        stopped = self.timed_out or self.memory_exceeded or self.disk_exceeded or self.processes_exceeded
        return self.exit_code == 0 and not stopped


class SandboxUnavailableError(RuntimeError):
    """The sandbox cannot be built on this machine, so untrusted code does not run."""


_isolation: str | None = None
_isolation_lock = asyncio.Lock()
_workdir_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def interpreter() -> str:
    """The Python the sandbox runs: this worker's own (its virtual environment, so pandas is there)."""
    if sys.prefix != sys.base_prefix:
        return str(Path(sys.prefix).resolve() / "bin" / Path(sys.executable).name)
    return str(Path(sys.executable).resolve())


def scratch_lock(workdir: Path) -> asyncio.Lock:
    """The lock every tool that touches `workdir` holds, so no program runs while a tool reads or writes there."""
    return _workdir_locks.setdefault(str(workdir.resolve()), asyncio.Lock())


def _outermost(paths: list[str]) -> list[str]:
    """The paths that lie inside none of the others."""
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == top or path.startswith(top.rstrip("/") + "/") for top in kept):
            kept.append(path)
    return kept


def _system_binds() -> list[str]:
    """/usr read-only, the merged-/usr links (or folders) beside it, and the two /etc files the loader and libc read."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for name in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.exists(name):
            args += ["--ro-bind", os.path.realpath(name), name]
    return args


def _environment(limits: SandboxLimits) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": SCRATCH,
        "TMPDIR": SCRATCH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def bwrap_argv(
    bwrap: str,
    python: str,
    workdir: Path,
    limits: SandboxLimits,
    bind: Callable[[str, str, bool], list[str]] | None = None,
) -> list[str]:
    """The whole bwrap command line for one run (the launcher inside, then the program); `source` names the
    folders bwrap binds, `--bind`/`--ro-bind` of the path unless told otherwise."""
    bind = bind or (lambda path, dest, writable: ["--bind" if writable else "--ro-bind", path, dest])
    trees = [os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), os.path.dirname(os.path.realpath(python))]
    if limits.python:
        trees.append(os.path.dirname(python))
    argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"]
    argv += ["--cap-drop", "ALL", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox"]
    argv += ["--clearenv"] + [part for key, value in _environment(limits).items() for part in ("--setenv", key, value)]
    argv += _system_binds()
    for tree in _outermost(trees):
        if tree != "/usr" and not tree.startswith("/usr/"):
            argv += bind(tree, tree, False)
    argv += ["--proc", "/proc"] if PROC_MOUNT == "fresh" else ["--ro-bind", "/proc", "/proc"]
    argv += ["--dev", "/dev", "--remount-ro", "/dev"]
    argv += bind(str(workdir.resolve()), SCRATCH, True) + bind(str(LAUNCHER), "/.swarmkeep/launcher.py", False)
    argv += ["--chdir", SCRATCH, "--remount-ro", "/"]
    config = {
        "wall_seconds": limits.wall_seconds,
        "memory_bytes": limits.memory_bytes,
        "cpu_seconds": limits.cpu_seconds,
        "max_file_bytes": limits.max_file_bytes,
        "max_open_files": limits.max_open_files,
        "max_processes": limits.max_processes,
        "argv": [python, "-I", "-"],
    }
    return argv + ["--", python, "-I", "-S", "/.swarmkeep/launcher.py", json.dumps(config)]


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


@dataclass
class _Watch:
    memory: bool = False
    processes: bool = False
    disk: bool = False


async def _watch(pid: int, workdir: Path, limits: SandboxLimits, seen: _Watch, polled: bool) -> None:
    """Kill the sandbox when its processes together pass the memory limit, or its scratch folder the disk limit."""
    round_ = 0
    while True:  # a backstop to the launcher's own 0.1 s checks inside, so it looks less often
        await asyncio.sleep(0.25)
        round_ += 1
        if polled:
            pids = await asyncio.to_thread(guard.descendants, pid)
            if len(pids) > limits.max_processes + 4:  # bwrap, its init, the launcher (and sh for a cgroup)
                seen.processes = True
                _kill_group(pid)
                return
            if await asyncio.to_thread(guard.memory_used, pids) > limits.memory_bytes:
                seen.memory = True
                _kill_group(pid)
                return
        if round_ % 2 == 0 and await asyncio.to_thread(guard.disk_used, workdir) > limits.max_scratch_bytes:
            seen.disk = True
            _kill_group(pid)
            return


def _cgroup(limits: SandboxLimits) -> guard.SandboxCgroup | None:
    global _cgroup_problem
    if _cgroup_problem is None:
        _cgroup_problem = guard.cgroup_problem() or ""
        if _cgroup_problem:
            log.warning(
                "sandbox limits without cgroups: %s; the worker totals each sandbox's memory and processes by "
                "polling instead (delegate the memory and pids controllers to the worker's cgroup to have the "
                "kernel enforce them)",
                _cgroup_problem,
            )
    if _cgroup_problem:
        return None
    try:
        return guard.make_cgroup(limits.memory_bytes, limits.max_processes)
    except OSError as error:
        log.warning("could not create a sandbox cgroup (%s); polling instead", error)
        return None


_cgroup_problem: str | None = None


async def _launch(code: str, workdir: Path, limits: SandboxLimits) -> SandboxOutcome:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError(
            "run_python is unavailable: bubblewrap (bwrap) is not installed on this worker; install it "
            "(Debian/Ubuntu: apt-get install bubblewrap, or run scripts/setup.sh as root)."
        )
    argv = bwrap_argv(bwrap, limits.python or interpreter(), workdir, limits)
    group = await asyncio.to_thread(_cgroup, limits)
    if group is not None:  # the shell moves itself into the cgroup, then becomes bwrap: nothing starts outside it
        moves = " && ".join(f'echo 0 > "{path}"' for path in group.procs)
        argv = ["/bin/sh", "-c", moves + ' && exec "$@"', "sh", *argv]
    return await _supervise(code, argv, workdir, limits, group)


async def _supervise(
    code: str,
    argv: list[str],
    workdir: Path,
    limits: SandboxLimits,
    group: guard.SandboxCgroup | None,
) -> SandboxOutcome:
    """Start bwrap, feed it the program, watch it, and kill the whole sandbox on a limit or the deadline."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    readers = asyncio.gather(
        _read_capped(process.stdout, limits.max_output_bytes), _read_capped(process.stderr, limits.max_output_bytes)
    )
    seen = _Watch()
    watcher = asyncio.create_task(_watch(process.pid, workdir, limits, seen, polled=group is None))
    timed_out = False
    try:
        if process.stdin is not None:
            try:
                process.stdin.write(code.encode())
                await process.stdin.drain()
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:  # the launcher keeps the same clock inside; this one holds if the inside one is defeated
            await asyncio.wait_for(process.wait(), limits.wall_seconds + 2.0)
        except TimeoutError:
            timed_out = True
    finally:
        watcher.cancel()
        _kill_group(process.pid)  # bwrap's death takes its PID namespace, and every process in it, along
        if process.returncode is None:
            await process.wait()
        if group is not None:
            seen.memory = seen.memory or group.oom_killed()
            await asyncio.to_thread(group.remove)
    try:
        (out, out_cut), (err, err_cut) = await asyncio.wait_for(readers, 5.0)
    except TimeoutError:
        readers.cancel()
        (out, out_cut), (err, err_cut) = (b"", True), (b"output could not be collected", True)
    code_ = process.returncode if process.returncode is not None else -1
    stderr = err.decode(errors="replace")
    outcome = SandboxOutcome(
        exit_code=code_,
        stdout=out.decode(errors="replace"),
        stderr=stderr,
        timed_out=timed_out or code_ == WALL_CLOCK,
        output_truncated=out_cut or err_cut,
        isolation="bwrap" + (" + cgroup" if group is not None else ""),
        memory_exceeded=seen.memory or code_ == MEMORY_TOTAL,
        disk_exceeded=seen.disk,
        processes_exceeded=seen.processes or code_ == PROCESS_TOTAL,
        setup_failed=(code_ == 1 and stderr.startswith("bwrap:"))
        or (code_ == SETUP_FAILED and "sandbox setup" in stderr),
    )
    outcome.verdict = explain(outcome, limits)
    return outcome


def explain(outcome: SandboxOutcome, limits: SandboxLimits) -> str:
    """A plain-words reason why a run failed (empty when it succeeded or simply raised an exception)."""
    code, err = outcome.exit_code, outcome.stderr
    if outcome.setup_failed:
        line = err.strip().splitlines()[-1] if err.strip() else "no reason given"
        hint = ""
        if "proc" in line:
            hint = " (a fresh /proc is required; in a container allow it, e.g. --security-opt systempaths=unconfined)"
        return f"the sandbox could not be set up, so the program did not run: {line}{hint}"
    if outcome.memory_exceeded:
        return f"out of memory: the sandbox allows {limits.memory_bytes >> 20} MiB for all its processes together"
    if outcome.processes_exceeded:
        return f"process limit reached: the sandbox allows {limits.max_processes} processes; it was stopped"
    if outcome.disk_exceeded:
        return f"disk limit reached: the scratch folder may hold {limits.max_scratch_bytes >> 20} MiB; write less"
    if outcome.timed_out:
        return f"stopped: it ran past the wall-clock limit of {limits.wall_seconds:g} s; do less per call"
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
    """`bwrap` (or `bwrap + cgroup`) once a probe showed the sandbox builds and cuts the network; else raise."""
    global _isolation
    async with _isolation_lock:
        if _isolation is None:
            with tempfile.TemporaryDirectory(prefix="swarmkeep-probe-") as folder:
                try:
                    outcome = await _launch(PROBE_CODE, Path(folder), SandboxLimits(wall_seconds=15))
                except SandboxUnavailableError as error:
                    outcome = SandboxOutcome(exit_code=SETUP_FAILED, stdout="", stderr="", verdict=str(error))
            if outcome.ok and outcome.stdout.strip() == "isolated":
                _isolation = outcome.isolation
            else:
                _isolation = "none: " + (outcome.verdict or outcome.stdout.strip() or outcome.stderr.strip())
    if _isolation.startswith("none"):
        raise SandboxUnavailableError(
            f"run_python is unavailable: the sandbox cannot be built on this worker ({_isolation[6:]}). It needs "
            "bubblewrap and unprivileged user namespaces (in Docker: a seccomp profile that allows unshare and "
            "a /proc that may be mounted afresh)."
        )
    return _isolation


async def run_sandboxed(code: str, workdir: Path, limits: SandboxLimits) -> SandboxOutcome:
    """Run `code` with `python -I` in the sandbox, `workdir` as its current folder; never raises for the program."""
    await isolation_mode(limits)
    workdir.mkdir(parents=True, exist_ok=True)
    async with scratch_lock(workdir):  # one program per scratch folder at a time, and no tool meanwhile
        return await _launch(code, workdir, limits)
