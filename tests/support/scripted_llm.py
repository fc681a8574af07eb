"""A scripted OpenAI-compatible chat server for deterministic orchestration tests; it can fail on cue.

It answers over real HTTP. The orchestrator's plan requests (they carry a response_format) get the scripted
plans in order; synthesis requests get a fixed answer; a sub-agent's requests are recognised by the subtask
instruction, which the default plan writes as "Do part <id>.".
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from swarmkeep.services.process import free_port

SUBTASK_RE = re.compile(r"Your subtask: Do part (\S+?)\.")
# In a scripted plan, stands for the job's task: the plan guards want every instruction to name the task's subject.
TASK_PLACEHOLDER = "{task}"


def with_task(plan: str, body: dict[str, Any]) -> str:
    """A scripted plan with the placeholder replaced by the task the plan request names."""
    messages = body.get("messages", [])
    user = str(messages[1].get("content") or "") if len(messages) > 1 else ""
    task = user.removeprefix("Task: ").split("\n\n")[0].strip()
    return plan.replace(TASK_PLACEHOLDER, json.dumps(task)[1:-1])


def plan_json(subtasks: list[dict[str, Any]]) -> str:
    return json.dumps({"subtasks": subtasks})


def fan_out_plan(n: int, roles: tuple[str, ...] = ("researcher", "analyst", "coder")) -> str:
    """n independent subtasks s1..sn."""
    return plan_json(
        [
            {
                "id": f"s{i}",
                "role": roles[(i - 1) % len(roles)],
                "instruction": f"Do part s{i}. {TASK_PLACEHOLDER}",
                "depends_on": [],
            }
            for i in range(1, n + 1)
        ]
    )


def diamond_plan() -> str:
    """s1 and s2 in parallel, then s3 using both."""
    return plan_json(
        [
            {"id": "s1", "role": "researcher", "instruction": f"Do part s1. {TASK_PLACEHOLDER}", "depends_on": []},
            {"id": "s2", "role": "analyst", "instruction": f"Do part s2. {TASK_PLACEHOLDER}", "depends_on": []},
            {
                "id": "s3",
                "role": "writer",
                "instruction": f"Do part s3. {TASK_PLACEHOLDER}",
                "depends_on": ["s1", "s2"],
            },
        ]
    )


@dataclass
class Fault:
    """Fail matching requests: `kind` is plan, subagent or synthesis; `times` how many requests to fail; `step`
    only a sub-agent's request for that step.

    Streamed answers (the request says `stream`) can also go wrong mid-answer, after `after_chunks` chunks: a
    status other than 200 becomes an error event there; `stall_s` stops sending for that long (`math.inf`: until
    the client hangs up); `drop` breaks the connection. `chunk_delay_s` streams slowly but steadily."""

    kind: str
    status: int = 500
    subtask: str | None = None
    step: int | None = None
    times: int = 1
    retry_after: float | None = None
    delay_s: float = 0.0
    body: str | None = None  # a 200 with this raw content instead of an error
    tool_call_arguments: str | None = None  # a 200 whose message is a tool call with these raw arguments
    # status 200 with no body: answer normally, after `delay_s` (a slow or stalled model)
    after_chunks: int | None = None
    stall_s: float = 0.0
    drop: bool = False
    chunk_delay_s: float = 0.0


@dataclass
class Script:
    """What the server answers; tests set it before submitting a job."""

    plans: list[str] = field(default_factory=lambda: [diamond_plan()])
    steps_to_conclude: int = 2
    synthesis: str = "Final answer built from the sub-agents' conclusions."
    subagent_delay_s: float = 0.0
    filler_chars: int = 0  # pad each sub-agent answer, to grow transcripts without growing conclusions
    # Tool calls a sub-agent makes, one per step, before it concludes: {subtask id: [(tool name, arguments)]}
    tool_plan: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    conclusion_pad: int = 0  # lengthen each conclusion by this many characters
    context_chars: int = 0  # a request whose messages are longer is refused as vLLM does (0: no limit)
    on_subagent: Callable[[str, int], None] | None = None  # called with (subtask id, step)
    chunk_chars: int = 16  # a streamed answer's content comes in pieces this long
    chunk_delay_s: float = 0.0  # between the chunks of every streamed answer


class DroppedConnection(Exception):
    """Raised inside a streamed answer to break its connection, as a crashing server would."""


def stream_chunks(completion: dict[str, Any], chunk_chars: int = 16) -> list[dict[str, Any]]:
    """A non-streamed completion as the `chat.completion.chunk`s an OpenAI-compatible server streams: the role,
    reasoning and content in pieces, each tool call's id and name then its arguments in pieces, the finish reason,
    then the usage (as `stream_options.include_usage` asks) in a chunk of no choices."""
    choice = completion["choices"][0]
    message = choice["message"]
    head = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"]}  # fmt: skip

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    def pieces(text: str) -> list[str]:
        return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]

    chunks = [chunk({"role": "assistant", "content": ""})]
    for name in ("reasoning_content", "reasoning"):
        chunks += [chunk({name: piece}) for piece in pieces(message.get(name) or "")]
    chunks += [chunk({"content": piece}) for piece in pieces(message.get("content") or "")]
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        chunks.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": {"name": function["name"], "arguments": ""}}]}))  # fmt: skip
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in pieces(function["arguments"])
        ]
    chunks.append(chunk({}, choice["finish_reason"]))
    chunks.append({**head, "choices": [], "usage": completion["usage"]})
    return chunks


class ScriptedLLM:
    """The server, its script and a log of what it was asked."""

    def __init__(self) -> None:
        self.script = Script()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._generation = 0  # bumped by reset(): calls of an earlier test still running count no more
        self.port = free_port()
        self._lock = threading.Lock()
        self._stopping = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self, script: Script | None = None) -> Script:
        with self._lock:
            self.script = script or Script()
            self.requests = []
            self.in_flight = self.max_in_flight = 0
            self._generation += 1
        return self.script

    def calls(self, kind: str, subtask: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["kind"] == kind and (subtask is None or r["subtask"] == subtask)]

    def _classify(self, body: dict[str, Any]) -> tuple[str, str | None, int]:
        messages = body.get("messages", [])
        if body.get("response_format"):
            return "plan", None, 0
        system = messages[0]["content"] if messages else ""
        if "They have finished their subtasks" in system:
            return "synthesis", None, 0
        if "failed every attempt" in system:
            match = re.search(r"Failed subtask: Do part (\S+?)\.", messages[1]["content"])
            return "regenerate", match.group(1) if match else None, 0
        opening = messages[1]["content"] if len(messages) > 1 else ""
        match = SUBTASK_RE.search(opening)
        step = sum(1 for m in messages if m["role"] == "assistant") + 1
        return "subagent", match.group(1) if match else None, step

    def _take_fault(self, kind: str, subtask: str | None, step: int) -> Fault | None:
        with self._lock:
            for fault in self.script.faults:
                if (
                    fault.kind == kind
                    and fault.times > 0
                    and fault.subtask in (None, subtask)
                    and fault.step in (None, step)
                ):
                    fault.times -= 1
                    return fault
        return None

    def _answer(self, kind: str, subtask: str | None, step: int) -> str:
        script = self.script
        if kind == "plan":
            with self._lock:
                index = len([r for r in self.requests if r["kind"] == "plan"]) - 1
            return script.plans[min(index, len(script.plans) - 1)]
        if kind == "synthesis":
            return script.synthesis
        if kind == "regenerate":
            return f"Do part {subtask}. Keep it short."
        filler = "x" * script.filler_chars
        if step >= script.steps_to_conclude:
            pad = " and more" + "." * max(script.conclusion_pad - 9, 0) if script.conclusion_pad else ""
            return f"Work on {subtask}, step {step}. {filler}\nCONCLUSION: result of {subtask}{pad}"
        return f"Work on {subtask}, step {step}: drafting. {filler}"

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            # In flight from the request's arrival to its answer's last byte (a streamed one's [DONE]).
            generation = self._enter()
            streaming = False
            try:
                body = await request.json()
                answered = await answer(body)
                if isinstance(answered, Response):
                    return answered
                completion, fault = answered
                if not body.get("stream"):
                    return JSONResponse(completion)
                streaming = True
                return StreamingResponse(
                    self._stream(body, completion, fault, generation), media_type="text/event-stream"
                )
            finally:
                if not streaming:
                    self._leave(generation)

        async def answer(body: dict[str, Any]) -> Response | tuple[dict[str, Any], Fault | None]:
            kind, subtask, step = self._classify(body)
            with self._lock:
                self.requests.append({"kind": kind, "subtask": subtask, "step": step, "at": time.time(), "body": body})
            length = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
            if self.script.context_chars and length > self.script.context_chars:
                message = (
                    f"This model's maximum context length is {self.script.context_chars} tokens. However, your "
                    f"prompt contains at least {length} input tokens. Please reduce the length of the input prompt."
                )
                return JSONResponse({"error": {"message": message, "type": "BadRequestError"}}, status_code=400)
            fault = self._take_fault(kind, subtask, step)
            if kind == "subagent":
                if self.script.on_subagent and subtask:
                    self.script.on_subagent(subtask, step)
                if self.script.subagent_delay_s:
                    await asyncio.sleep(self.script.subagent_delay_s)
            content = self._answer(kind, subtask, step)
            if kind == "plan":
                content = with_task(content, body)
            planned = self.script.tool_plan.get(subtask or "", []) if kind == "subagent" else []
            if fault is None and body.get("tools") and step <= len(planned):
                name, arguments = planned[step - 1]
                call = {"id": f"functions.{name}:{step - 1}", "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)}}  # fmt: skip
                message = {"role": "assistant", "content": "", "tool_calls": [call]}
                return self._completion(body, message, "tool_calls"), None
            if fault is not None:
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                if fault.tool_call_arguments is not None:
                    call = {"id": "functions.search:0", "type": "function",
                            "function": {"name": "search", "arguments": fault.tool_call_arguments}}  # fmt: skip
                    message = {"role": "assistant", "content": None, "tool_calls": [call]}
                    return self._completion(body, message, "tool_calls"), fault
                if fault.body is not None:
                    content = fault.body
                elif fault.status != 200 and fault.after_chunks is None:
                    headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
                    return JSONResponse(
                        {"error": {"message": f"scripted failure {fault.status}", "type": "scripted"}},
                        status_code=fault.status,
                        headers=headers,
                    )
            return self._completion(body, {"role": "assistant", "content": content}, "stop"), fault

        return app

    def _enter(self) -> int:
        """Count a call in flight; returns the script generation it belongs to."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self._generation

    def _leave(self, generation: int) -> None:
        if generation == self._generation:
            self.in_flight -= 1

    async def _stream(
        self, body: dict[str, Any], completion: dict[str, Any], fault: Fault | None, generation: int
    ) -> AsyncIterator[str]:
        """A completion as server-sent events, going wrong mid-answer where the fault says."""
        chunks = stream_chunks(completion, self.script.chunk_chars)
        if not (body.get("stream_options") or {}).get("include_usage"):
            chunks = chunks[:-1]
        delay = fault.chunk_delay_s if fault is not None and fault.chunk_delay_s else self.script.chunk_delay_s
        counted = True
        try:
            for index, chunk in enumerate(chunks):
                if fault is not None and fault.after_chunks == index:
                    if fault.drop:
                        raise DroppedConnection("scripted: connection dropped mid-answer")
                    if fault.stall_s:
                        stalled_until = time.monotonic() + fault.stall_s
                        while time.monotonic() < stalled_until and not self._stopping:
                            await asyncio.sleep(0.05)
                    if fault.status != 200:
                        error = {"message": f"scripted failure {fault.status} mid-answer", "type": "scripted",
                                 "code": fault.status}  # fmt: skip
                        yield f"data: {json.dumps({'error': error})}\n\n"
                        return
                if delay and index:
                    await asyncio.sleep(delay)
                yield f"data: {json.dumps(chunk)}\n\n"
            self._leave(generation)  # before the last line: the client may send its next call as soon as it has it
            counted = False
            yield "data: [DONE]\n\n"
        finally:
            if counted:
                self._leave(generation)

    def _completion(self, body: dict[str, Any], message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the scripted LLM server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
