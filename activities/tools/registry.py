"""Toolsets: which tools each role gets, and `call`, which turns every failure into an error result."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from swarmkeep.activities.tools.base import Tool, ToolContext, ToolError, ToolResult
from swarmkeep.activities.tools.documents import WRITE_DOCX, WRITE_MARKDOWN
from swarmkeep.activities.tools.fetch import FETCH_URL
from swarmkeep.activities.tools.files import LIST_FILES, READ_FILE
from swarmkeep.activities.tools.python_tool import RUN_PYTHON
from swarmkeep.activities.tools.sandbox import scratch_lock
from swarmkeep.activities.tools.search import WEB_SEARCH
from swarmkeep.activities.tools.slides import WRITE_PPTX
from swarmkeep.activities.tools.tables import READ_TABLE, WRITE_TABLE

log = logging.getLogger(__name__)
PREVIEW_CHARS = 500


def error_result(name: str, message: str) -> ToolResult:
    """A failed call, told to the model in words it can act on."""
    return ToolResult(content=f"Error: {message}", is_error=True, name=name)


class Toolset:
    """The tools one sub-agent may call, with their OpenAI specs and a `call` that never raises for a tool's fault."""

    def __init__(self, tools: Iterable[Tool]):
        self.tools: dict[str, Tool] = {tool.name: tool for tool in tools}
        self._validators = {name: Draft202012Validator(tool.parameters) for name, tool in self.tools.items()}

    @property
    def names(self) -> list[str]:
        """The tool names, in the order they were given."""
        return list(self.tools)

    def specs(self) -> list[dict[str, Any]]:
        """The `tools=[...]` list for an OpenAI chat completion request."""
        return [tool.spec() for tool in self.tools.values()]

    def _arguments(self, name: str, arguments: Mapping[str, Any] | str | None) -> dict[str, Any] | ToolResult:
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):  # the OpenAI API hands arguments over as a JSON string
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as error:
                return error_result(name, f"arguments are not valid JSON ({error}); send one JSON object")
        if not isinstance(arguments, Mapping):
            return error_result(name, "arguments must be a JSON object")
        problem = best_match(self._validators[name].iter_errors(arguments))
        if problem is not None:
            where = "/".join(str(p) for p in problem.absolute_path) or "(top level)"
            return error_result(name, f"invalid arguments at {where}: {problem.message}")
        return dict(arguments)

    async def call(self, name: str, arguments: Mapping[str, Any] | str | None, context: ToolContext) -> ToolResult:
        """Validate and run one tool call within its time and size limits; failures come back as error results."""
        tool = self.tools.get(name)
        if tool is None:
            return error_result(name, f"unknown tool {name!r}; available tools: {', '.join(self.tools) or 'none'}")
        checked = self._arguments(name, arguments)
        if isinstance(checked, ToolResult):
            return checked
        try:
            result = await asyncio.wait_for(tool.handler(checked, context), tool.timeout_s)
        except TimeoutError:
            return error_result(name, f"{name} did not finish within its limit of {tool.timeout_s:g} s; ask for less")
        except ToolError as error:
            return error_result(name, str(error))
        except Exception as error:  # a tool's bug must not end the sub-agent
            log.exception("tool %s failed", name)
            return error_result(name, f"{name} failed: {type(error).__name__}: {error}")
        result.name = name
        if len(result.content) > tool.max_output_chars:
            preview = result.content[:PREVIEW_CHARS]
            result.content = (
                f"Error: {name} returned {len(result.content)} characters, over its limit of {tool.max_output_chars}; "
                f"ask for less (a smaller range, fewer rows, less printing). It began:\n{preview}"
            )
            result.is_error = True
        await _record_artifacts(result, context)
        return result


async def _record_artifacts(result: ToolResult, context: ToolContext) -> None:
    """Hand each artifact to the context's callback; a callback failure is reported, not raised."""
    if context.on_artifact is None:
        return
    async with scratch_lock(context.scratch_dir):  # the callback copies from the scratch folder: no program meanwhile
        for artifact in result.artifacts:
            try:
                outcome = context.on_artifact(artifact, context.scratch_dir / artifact)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as error:
                log.exception("recording artifact %s failed", artifact)
                result.content += (
                    f"\n(The file {artifact} was written but could not be recorded as an artifact: {error})"
                )


COMMON_TOOLS: list[Tool] = [LIST_FILES, READ_FILE]
ROLE_TOOLS: dict[str, list[Tool]] = {
    "researcher": [FETCH_URL, WEB_SEARCH, *COMMON_TOOLS],
    "coder": [RUN_PYTHON, *COMMON_TOOLS],
    "writer": [WRITE_MARKDOWN, WRITE_DOCX, *COMMON_TOOLS],
    "slides": [WRITE_PPTX, *COMMON_TOOLS],
    "analyst": [READ_TABLE, WRITE_TABLE, RUN_PYTHON, *COMMON_TOOLS],
}


@functools.cache
def toolset_for(role: str) -> Toolset:
    """The toolset of a role (researcher, coder, writer, slides, analyst); other roles get the file tools only.
    Built once per role: every sub-agent of the role shares it (building its schema validators took 0.1 ms)."""
    return Toolset(ROLE_TOOLS.get(role, COMMON_TOOLS))
