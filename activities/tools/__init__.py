"""Tools for the specialist sub-agents, called through OpenAI-style tool calling.

`toolset_for(role)` gives a role's `Toolset`; `toolset.specs()` is the `tools=[...]` of a chat request;
`await toolset.call(name, arguments, context)` runs one call and always returns a `ToolResult`;
`as_tool_message(call_id, result)` is the `{"role": "tool"}` message that carries it back as untrusted data.
"""

from swarmkeep.activities.tools.base import FetchLimits, Tool, ToolContext, ToolError, ToolResult
from swarmkeep.activities.tools.messages import as_tool_message, wrap_tool_output
from swarmkeep.activities.tools.registry import ROLE_TOOLS, Toolset, toolset_for
from swarmkeep.activities.tools.sandbox import SandboxLimits, SandboxUnavailableError, run_sandboxed
from swarmkeep.activities.tools.search import SearchHit, SearchProvider, SearxngSearch, search_provider_for

__all__ = [
    "ROLE_TOOLS",
    "FetchLimits",
    "SandboxLimits",
    "SandboxUnavailableError",
    "SearchHit",
    "SearchProvider",
    "SearxngSearch",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "Toolset",
    "as_tool_message",
    "run_sandboxed",
    "search_provider_for",
    "toolset_for",
    "wrap_tool_output",
]
