"""Open files in a job's scratch folder one path component at a time, never following a link.

A sandboxed program can swap any folder of the scratch folder for a symlink at any moment; checking a path and
opening it later lets that swap redirect the worker. Here every folder is opened with O_NOFOLLOW|O_DIRECTORY
relative to the one before (`dir_fd`), the file itself with O_NOFOLLOW, and what was opened is checked with fstat.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(ValueError):
    """The name leaves the scratch folder, goes through a link, or is not a regular file."""


def name_parts(name: str) -> list[str]:
    """The components of a relative name; raise UnsafePathError for absolute names, `..` and NUL."""
    if not name or name.startswith(("/", "\\")) or "\x00" in name:
        raise UnsafePathError(f"file name {name!r} must be a relative path inside the job's scratch folder")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePathError(f"file name {name!r} leaves the job's scratch folder; use a plain relative name")
    return parts


def clean_name(name: str) -> str:
    """The name as the artifact list shows it (`./a//b` -> `a/b`)."""
    return "/".join(name_parts(name))


@contextlib.contextmanager
def _folder(root: Path, parts: list[str], create: bool) -> Iterator[int]:
    """A descriptor of the folder `root/parts...`, each component opened without following links."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except (NotADirectoryError, OSError) as error:
                raise UnsafePathError(f"{part!r} is not a folder in the scratch folder ({error.strerror})") from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def open_regular(root: Path, name: str) -> int:
    """A read-only descriptor of the regular file `name` under `root`; UnsafePathError if it is anything else."""
    *folders, leaf = name_parts(name)
    with _folder(root, folders, create=False) as parent:
        try:
            fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise UnsafePathError(f"{name!r} cannot be opened safely ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"{name!r} is not a regular file")
    return fd


@contextlib.contextmanager
def reader(root: Path, name: str) -> Iterator[BinaryIO]:
    """The regular file `name` under `root`, opened for reading without following links."""
    with os.fdopen(open_regular(root, name), "rb") as handle:
        yield handle


@contextlib.contextmanager
def writer(root: Path, name: str) -> Iterator[BinaryIO]:
    """The file `name` under `root`, created or emptied, its folders made; no link is followed on the way."""
    *folders, leaf = name_parts(name)
    with _folder(root, folders, create=True) as parent:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(leaf, flags, 0o644, dir_fd=parent)
        except OSError as error:
            raise UnsafePathError(f"{name!r} cannot be written safely ({error.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise UnsafePathError(f"{name!r} is not a plain file (a device, a pipe or a hard link); pick another name")
    os.ftruncate(fd, 0)
    with os.fdopen(fd, "wb") as handle:
        yield handle


def regular_files(root: Path) -> dict[str, tuple[int, int]]:
    """Every regular file under `root` as relative name -> (size, modification time in ns); links not followed."""
    files: dict[str, tuple[int, int]] = {}
    if not root.is_dir():
        return files
    for folder, _, names, folder_fd in os.fwalk(root, follow_symlinks=False):
        for name in names:
            try:
                info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                relative = os.path.relpath(os.path.join(folder, name), root)
                files[Path(relative).as_posix()] = (info.st_size, info.st_mtime_ns)
    return dict(sorted(files.items()))
