"""The types every tool shares: what a tool gets (ToolContext), what it returns (ToolResult), what it is (Tool)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmkeep.activities.tools.safe_paths import UnsafePathError, clean_name
from swarmkeep.activities.tools.sandbox import SandboxLimits
from swarmkeep.netguard import DEFAULT_PORTS

if TYPE_CHECKING:
    from swarmkeep.activities.tools.search import SearchProvider


class ToolError(Exception):
    """A tool's own failure, told to the model as an error result (the message says what to do instead)."""


@dataclass(frozen=True)
class FetchLimits:
    """How far fetch_url may go: allow-list for the SSRF guard, size, time and redirects."""

    allow: Sequence[str] = ()
    ports: Sequence[str] = DEFAULT_PORTS  # the ports public addresses may be reached on (SWARMKEEP_OUTBOUND_PORTS)
    max_bytes: int = 2_000_000
    timeout_s: float = 20.0
    max_redirects: int = 3
    user_agent: str = "swarmkeep-researcher/0.1"


@dataclass
class ToolContext:
    """What a tool call may use: the job, its scratch folder, where artifacts go, and the limits in force."""

    job_id: str
    scratch_dir: Path
    on_artifact: Callable[[str, Path], Awaitable[None] | None] | None = None
    fetch: FetchLimits = field(default_factory=FetchLimits)
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    search: SearchProvider | None = None

    def name(self, name: str) -> str:
        """A relative file name checked and cleaned (`./a//b` -> `a/b`); ToolError if it could leave the folder.
        Open it with safe_paths (component by component, links never followed), not through a joined path."""
        try:
            return clean_name(name)
        except UnsafePathError as error:
            raise ToolError(str(error)) from None

    def path(self, name: str) -> Path:
        """Where a checked name lies in the scratch folder (for messages and callbacks; never open it directly)."""
        return self.scratch_dir / self.name(name)


@dataclass
class ToolResult:
    """One tool call's outcome: text for the model, the artifacts it produced, and whether it failed."""

    content: str
    artifacts: list[str] = field(default_factory=list)
    is_error: bool = False
    name: str = ""


ToolHandler = Callable[[dict[str, Any], ToolContext], Awaitable[ToolResult]]


@dataclass(frozen=True)
class Tool:
    """A tool the model can call: name, description, JSON schema of its arguments, handler and limits."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler
    timeout_s: float = 60.0
    max_output_chars: int = 20_000

    def spec(self) -> dict[str, Any]:
        """The OpenAI `tools=[...]` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }
