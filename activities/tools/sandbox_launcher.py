"""Stand-alone launcher that puts one run_python program into its sandbox, then execs the interpreter.

Run as `python -I -S sandbox_launcher.py CONFIG_JSON`; it uses the standard library only, because it runs before
any isolation is in place and must not import the worker's packages. Steps: new network, mount and PID namespaces
(plus a user namespace when not root); a private view of the file system in which `hide` folders are empty tmpfs
and only `expose_ro`/`expose_rw` folders are bound back; then, in the namespace's first process: a fresh /proc,
resource limits, no new privileges, the sandbox uid (when root) and `execve` of the program.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SETUP_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda value: value.encode() if value is not None else None  # noqa: E731
    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _enter_namespaces(config: dict[str, Any]) -> None:
    """New network, mount and PID namespaces; a user namespace mapping our own ids when not root."""
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID
    if config["mode"] == "userns":
        uid, gid = os.getuid(), os.getgid()
        _check(_libc.unshare(flags | CLONE_NEWUSER), "unshare(user, net, mount, pid)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    else:
        _check(_libc.unshare(flags), "unshare(net, mount, pid)")


def _private_filesystem(config: dict[str, Any]) -> None:
    """Empty tmpfs over `hide` folders, with the `expose` folders bound back (read-only unless `expose_rw`)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    exposed = [(path, False) for path in config["expose_ro"]] + [(path, True) for path in config["expose_rw"]]
    # Open every exposed folder before hiding anything: /proc/self/fd/N still reaches it once it is covered.
    handles = [(os.open(path, os.O_PATH | os.O_DIRECTORY), path, writable) for path, writable in exposed]
    for folder in config["hide"]:
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=755,size={config['tmpfs_bytes']}")
    for handle, path, writable in handles:
        if not any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in config["hide"]):
            continue  # not covered, so still visible as it is
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC)
        if not writable:
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(handle)


def _wait_status(pid: int) -> int:
    """Wait for `pid`, reaping any other child meanwhile; its exit status, or 128 + signal if it was killed."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return SETUP_FAILED
        except InterruptedError:
            continue
        if done == pid:
            return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _init(config: dict[str, Any]) -> int:
    """The PID namespace's first process: mount its /proc, start the program, reap orphans until it exits.

    The program is not PID 1 itself, so signals behave as usual for it; when this process exits, the kernel kills
    every process left in the namespace.
    """
    # Some containers forbid a fresh /proc; the host's then stays, which changes nothing that matters here.
    with contextlib.suppress(OSError):
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    program = os.fork()
    if program == 0:
        try:
            _become_program(config)
        except OSError as error:
            print(f"sandbox setup failed: {error}", file=sys.stderr)
        os._exit(SETUP_FAILED)
    return _wait_status(program)


def _become_program(config: dict[str, Any]) -> None:
    """Limits, no privileges, the sandbox uid, then exec the program."""
    limits = config["limits"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["max_file_bytes"], limits["max_file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["max_open_files"], limits["max_open_files"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"], limits["max_processes"]))
    if config["mode"] == "root":
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    # Set after setuid (which clears it): if the launcher dies, this process and the whole namespace die too.
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(pdeathsig)")
    os.chdir(config["cwd"])
    os.execve(config["argv"][0], config["argv"], config["env"])


def main() -> int:
    """Set up the sandbox and run the program in it; exit with its status (128 + signal if it was killed)."""
    config = json.loads(sys.argv[1])
    try:
        if config["mode"] != "none":
            _enter_namespaces(config)
            _private_filesystem(config)
    except OSError as error:
        print(f"sandbox setup failed: {error}", file=sys.stderr)
        return SETUP_FAILED
    child = os.fork()
    if child == 0:
        os._exit(_init(config) if config["mode"] != "none" else _become_and_fail(config))
    return _wait_status(child)


def _become_and_fail(config: dict[str, Any]) -> int:
    """Without namespaces there is no init to run: exec the program directly (returns only if that fails)."""
    try:
        _become_program(config)
    except OSError as error:
        print(f"sandbox setup failed: {error}", file=sys.stderr)
    return SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main())
