"""Run swarmkeep's own commands as child processes configured by a test's settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import SecretStr

from swarmkeep.services.process import ManagedProcess
from swarmkeep.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The SWARMKEEP_* variables that reproduce `settings` in a child process."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            value = json.dumps(value)  # pydantic-settings reads complex values as JSON
        env[f"SWARMKEEP_{name.upper()}"] = str(value)
    return env


def swarmkeep_process(command: str, settings: Settings, log_file: Path) -> ManagedProcess:
    return ManagedProcess(
        f"swarmkeep {command}",
        [sys.executable, "-m", "swarmkeep", command],
        log_file,
        env=settings_env(settings),
    )
