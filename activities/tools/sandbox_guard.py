"""The worker's side of the per-sandbox limits: child cgroups where the machine allows them, and a watchdog
that totals the sandbox's memory and scratch-folder use and kills the whole sandbox when either passes its limit.

Stdlib only, like sandbox.py, so an unprivileged worker can load both without the project's dependencies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class SandboxCgroup:
    """The child cgroups holding one sandbox (one in cgroup v2; one per controller in v1), with its totals set."""

    paths: list[Path]

    @property
    def procs(self) -> list[Path]:
        """The files a process writes `0` to in order to move itself in."""
        return [path / "cgroup.procs" for path in self.paths]

    def oom_killed(self) -> bool:
        """True when the kernel killed a process of this sandbox for passing its memory limit."""
        for path in self.paths:
            for events in ("memory.events", "memory.oom_control"):  # v2, v1
                for line in _read(path / events).splitlines():
                    name, _, value = line.partition(" ")
                    if name == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                        return True
        return False

    def remove(self) -> None:
        """Kill whatever is left in it, then remove it."""
        for path in self.paths:
            with contextlib.suppress(OSError):
                (path / "cgroup.kill").write_text("1")
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    _kill_listed(path / "cgroup.procs")
                    time.sleep(0.02)
            else:
                log.warning("could not remove the sandbox cgroup %s", path)


def _kill_listed(procs: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        for pid in procs.read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), 9)


def _own_cgroups() -> dict[str, Path]:
    """The worker's cgroup folder per v1 controller, and under "" its cgroup v2 folder."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            base = CGROUP_ROOT if name == "" else CGROUP_ROOT / name
            if name == "" and not (CGROUP_ROOT / "cgroup.controllers").is_file():
                base = CGROUP_ROOT / "unified"
            found[name] = base / path.lstrip("/")
    return found


def cgroup_problem() -> str | None:
    """Why no per-sandbox cgroup (v2, else v1 memory and pids) can be made here, in words; None when one can."""
    try:
        own = _own_cgroups()
    except (OSError, ValueError) as error:
        return f"the worker's cgroups cannot be read ({error})"
    v2 = own.get("")
    if v2 is not None and (v2 / "cgroup.subtree_control").is_file():
        enabled = (v2 / "cgroup.subtree_control").read_text().split()
        if all(name in enabled for name in ("memory", "pids")) and os.access(v2, os.W_OK):
            return None
    v1 = [own.get(name) for name in ("memory", "pids")]
    if all(path is not None and (path / "cgroup.procs").is_file() and os.access(path, os.W_OK) for path in v1):
        return None
    return (
        "neither a cgroup v2 with the memory and pids controllers delegated to the worker's cgroup, nor writable "
        "cgroup v1 memory and pids hierarchies"
    )


def make_cgroup(memory_bytes: int, max_processes: int) -> SandboxCgroup:
    """Fresh child cgroups of the worker's own with memory and process totals set (v2 if it can, else v1)."""
    own, name = _own_cgroups(), f"swarmkeep-sandbox-{uuid.uuid4().hex[:12]}"
    pids = str(max_processes + 3)  # bwrap, its init and the launcher count too
    v2 = own.get("")
    if v2 is not None and "memory" in _read(v2 / "cgroup.subtree_control").split():
        settings = {v2 / name: {"memory.max": str(memory_bytes), "memory.swap.max": "0", "pids.max": pids}}
    else:
        settings = {
            own["memory"] / name: {
                "memory.limit_in_bytes": str(memory_bytes),
                "memory.memsw.limit_in_bytes": str(memory_bytes),
            },
            own["pids"] / name: {"pids.max": pids},
        }
    group = SandboxCgroup([])
    try:
        for path, values in settings.items():
            path.mkdir()
            group.paths.append(path)
            for key, value in values.items():
                if key.startswith("memory.memsw") or key == "memory.swap.max":
                    with contextlib.suppress(OSError):  # no swap accounting: there is no swap to limit either
                        (path / key).write_text(value)
                else:
                    (path / key).write_text(value)
    except OSError:
        group.remove()
        raise
    return group


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _parents() -> dict[int, int]:
    """Every process's parent pid, from /proc/<pid>/stat (readable for every process)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory_used(pids: list[int]) -> int:
    """Proportional set size of the processes together, in bytes (shared pages counted once in all)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def disk_used(root: Path, cap_entries: int = 200_000) -> int:
    """Bytes allocated under `root`, links not followed; stops counting after `cap_entries` entries."""
    total, seen = 0, 0
    todo = [str(root)]
    while todo and seen < cap_entries:
        folder = todo.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        todo.append(entry.path)
        except OSError:
            continue
    return total
