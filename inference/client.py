"""LLM client: the `openai` SDK with its own retries off, so Temporal owns every retry."""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk
from temporalio import activity
from temporalio.exceptions import ApplicationError

from swarmkeep.inference.limiter import STREAMING, WAITING_FOR_MODEL, Outcome, limiter_for
from swarmkeep.settings import HARD_MAX_PARALLEL, Settings

DEFAULT_RETRY_AFTER_S = 5.0
DEFAULT_IDLE_TIMEOUT_S = 60.0
DEFAULT_MAX_CONCURRENCY = HARD_MAX_PARALLEL

ProgressHook = Callable[[str], None]  # hears WAITING_FOR_MODEL or STREAMING

# Statuses an endpoint answers the same way every time: a request it rejects as malformed or unauthorised.
PERMANENT_STATUSES = (400, 401, 403, 404, 422)


@dataclass
class LLMReply:
    """One chat completion: the answer, any reasoning the model showed, and the tokens it cost."""

    content: str
    reasoning: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


def is_kimi_model(model: str) -> bool:
    return "kimi" in model.lower()


def retry_after_seconds(headers: Any) -> float:
    """The delay a 429 asks for, from `Retry-After` (seconds or an HTTP date) or `retry-after-ms`."""
    if headers is None:
        return DEFAULT_RETRY_AFTER_S
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return DEFAULT_RETRY_AFTER_S
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else DEFAULT_RETRY_AFTER_S


# How OpenAI-compatible servers (vLLM, OpenAI, Moonshot) say a prompt is longer than the model's context.
CONTEXT_TOO_LONG = "LLMContextTooLong"
CONTEXT_TOO_LONG_RE = re.compile(r"context length|context_length|context window|token limit", re.IGNORECASE)


def to_activity_error(error: openai.OpenAIError) -> ApplicationError:
    """Turn an SDK error into the failure Temporal should see: retryable, with the server's delay on 429."""
    if isinstance(error, openai.RateLimitError):
        delay = retry_after_seconds(error.response.headers)
        return ApplicationError(
            f"The LLM endpoint is rate limiting (429); retrying after {delay:.1f}s",
            type="RateLimited",
            next_retry_delay=timedelta(seconds=delay),
        )
    if isinstance(error, openai.APITimeoutError):
        return ApplicationError(f"The LLM call timed out: {error}", type="LLMTimeout")
    if isinstance(error, openai.APIConnectionError):
        return ApplicationError(f"Could not reach the LLM endpoint: {error}", type="LLMUnreachable")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 400 and CONTEXT_TOO_LONG_RE.search(error.message):
            return ApplicationError(
                f"The prompt does not fit the model's context: {error.message}",
                type=CONTEXT_TOO_LONG,
                non_retryable=True,
            )
        return ApplicationError(
            f"The LLM endpoint answered {status}: {error.message}",
            type=f"LLMHttp{status}",
            non_retryable=status in PERMANENT_STATUSES,
        )
    return ApplicationError(f"The LLM call failed: {error}", type="LLMError")


def checked_tool_calls(tool_calls: list[tuple[str, str, str]]) -> list[dict[str, Any]] | None:
    """Tool calls (id, name, raw arguments) as plain dicts with parsed arguments; a malformed one fails the
    attempt so it is retried."""
    if not tool_calls:
        return None
    checked = []
    for call_id, name, raw_arguments in tool_calls:
        try:
            arguments = json.loads(raw_arguments or "{}")
        except json.JSONDecodeError as error:
            raise ApplicationError(
                f"The model returned a malformed tool call ({name}: arguments are not JSON: {error.msg})",
                type="MalformedToolCall",
            ) from error
        if not name or not isinstance(arguments, dict):
            raise ApplicationError(
                f"The model returned a malformed tool call (id {call_id!r}, name {name!r}, arguments "
                f"{raw_arguments!r})",
                type="MalformedToolCall",
            )
        checked.append({"id": call_id, "name": name, "arguments": arguments})
    return checked


def _joined(before: str, piece: str | None) -> str:
    # Tool-call ids and names come in the first delta of a call; a server that repeats them is not doubled.
    if not piece or piece == before:
        return before
    return before + piece


@dataclass
class _Answer:
    """A streamed answer put back together: the same fields a non-streamed completion has."""

    content: list[str] = field(default_factory=list)
    reasoning_content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [id, name, arguments]
    finish_reason: str | None = None
    usage: CompletionUsage | None = None
    chunks: int = 0
    choices: int = 0

    def add(self, chunk: ChatCompletionChunk) -> None:
        self.chunks += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            self.choices += 1
            delta = choice.delta
            if delta.content:
                self.content.append(delta.content)
            extra = delta.model_extra or {}
            if extra.get("reasoning_content"):
                self.reasoning_content.append(str(extra["reasoning_content"]))
            if extra.get("reasoning"):
                self.reasoning.append(str(extra["reasoning"]))
            for call in delta.tool_calls or []:
                parts = self.calls.setdefault(call.index, ["", "", ""])
                parts[0] = _joined(parts[0], call.id)
                if call.function is not None:
                    parts[1] = _joined(parts[1], call.function.name)
                    parts[2] += call.function.arguments or ""
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def reply(self) -> LLMReply:
        if not self.choices:
            raise ApplicationError(
                "The LLM endpoint's stream carried no answer (it should answer `stream: true` requests with "
                "server-sent chunks)",
                type="LLMEmpty",
            )
        if self.finish_reason is None:
            raise ApplicationError(
                f"The LLM stream ended after {self.chunks} chunks without finishing the answer", type="LLMStreamBroken"
            )
        reasoning = "".join(self.reasoning_content) or "".join(self.reasoning) or None
        return LLMReply(
            content="".join(self.content),
            reasoning=reasoning,
            prompt_tokens=self.usage.prompt_tokens if self.usage else 0,
            completion_tokens=self.usage.completion_tokens if self.usage else 0,
            finish_reason=self.finish_reason,
            tool_calls=checked_tool_calls([(c[0], c[1], c[2]) for _, c in sorted(self.calls.items())]),
        )


def mid_stream_error(error: openai.APIError) -> ApplicationError:
    """An error event inside a stream (vLLM and Moonshot send `data: {"error": {...}}`), mapped as a status
    error at the stream's opening would be; the server's delay is unknown there, so a 429 waits the default."""
    body = error.body if isinstance(error.body, dict) else {}
    code = body.get("code")
    status = code if isinstance(code, int) else int(code) if isinstance(code, str) and code.isdigit() else None
    if status == 429 or body.get("type") in ("rate_limit_error", "rate_limit_exceeded"):
        return ApplicationError(
            f"The LLM endpoint is rate limiting (429, mid-answer); retrying after {DEFAULT_RETRY_AFTER_S:.1f}s",
            type="RateLimited",
            next_retry_delay=timedelta(seconds=DEFAULT_RETRY_AFTER_S),
        )
    if CONTEXT_TOO_LONG_RE.search(error.message):
        return ApplicationError(
            f"The prompt does not fit the model's context: {error.message}", type=CONTEXT_TOO_LONG, non_retryable=True
        )
    if status is not None:
        return ApplicationError(
            f"The LLM endpoint failed mid-answer ({status}): {error.message}",
            type=f"LLMHttp{status}",
            non_retryable=status in PERMANENT_STATUSES,
        )
    return ApplicationError(f"The LLM endpoint failed mid-answer: {error.message}", type="LLMError")


class ActivityHeartbeat:
    """Heartbeats the running activity in the background while it waits on the model, and says in the details
    when it is waiting for a model slot (`{"state": "waiting_for_model"}`), which the job's progress counts.

    Used as the LLM client's progress hook. It only proves the worker alive: a model that stops producing is
    caught by the client's idle timeout. The first beat waits one interval: Temporal sends a first heartbeat at
    once (a write on the server), and most calls that end sooner need none."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.waiting = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_activity(cls) -> ActivityHeartbeat | None:
        """One for the current activity when it has a heartbeat timeout; None elsewhere."""
        if not activity.in_activity():
            return None
        timeout = activity.info().heartbeat_timeout
        return cls(max(timeout.total_seconds() / 3, 0.5)) if timeout else None

    def __call__(self, state: str) -> None:
        waiting = state == WAITING_FOR_MODEL
        if waiting != self.waiting:  # said at once; the background beats repeat it
            self.waiting = waiting
            self.beat()

    def beat(self) -> None:
        if self.waiting:
            activity.heartbeat({"state": WAITING_FOR_MODEL})
        else:
            activity.heartbeat()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.beat()

    async def __aenter__(self) -> ActivityHeartbeat:
        self._task = asyncio.create_task(self._beat_forever())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()


class LLMClient:
    """Streamed chat completions against any OpenAI-compatible endpoint, counting tokens per call; at most the
    endpoint's limit in flight per process (limiter.py)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout_s: float,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        thinking: bool = False,
        writing: dict[str, float] | None = None,
    ):
        self.model = model
        self.thinking = thinking
        self.writing = dict(writing or {})  # sampling of prose calls (chat(writing=True)); see profiles.py
        self.base_url = base_url
        self.timeout_s = timeout_s  # the whole call's ceiling
        self.idle_timeout_s = idle_timeout_s  # the longest silence of the endpoint within a call
        self.max_concurrency = max_concurrency
        # The SDK's own timeouts stay at the ceiling; silences are timed here, chunk by chunk.
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        from swarmkeep.inference.profiles import max_concurrent_requests, writing_sampling  # light: no vLLM import

        return cls(
            base_url=settings.effective_llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            model=settings.effective_llm_model,
            timeout_s=settings.llm_timeout_s,
            idle_timeout_s=settings.llm_idle_timeout_s,
            max_concurrency=max_concurrent_requests(settings),
            thinking=settings.llm_thinking,
            writing=writing_sampling(settings),
        )

    def _extra_body(self, model: str | None = None) -> dict[str, Any] | None:
        if not is_kimi_model(model or self.model):
            return None
        # Moonshot's API reads `thinking`; vLLM's Kimi chat template reads `chat_template_kwargs`.
        return {
            "thinking": {"type": "enabled" if self.thinking else "disabled"},
            "chat_template_kwargs": {"thinking": self.thinking},
        }

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        writing: bool = False,
        on_progress: ProgressHook | None = None,
    ) -> LLMReply:
        """One streamed chat completion (with this client's model unless `model` is given); SDK errors come out as
        Temporal `ApplicationError`s. `writing` marks a call that writes prose, sampled as the client's `writing`
        settings say. `on_progress` hears `waiting_for_model` when the call queues for a slot and `streaming` as
        chunks arrive; inside an activity with a heartbeat timeout and no hook, the call heartbeats itself."""
        kwargs: dict[str, Any] = {
            "model": model or self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        extra = self._extra_body(model) or {}
        if writing:
            for name, value in self.writing.items():
                if name in ("temperature", "top_p"):
                    kwargs[name] = value
                else:  # vLLM's own sampling fields go in the request body
                    extra[name] = value
        if response_format is not None:
            kwargs["response_format"] = response_format
        if temperature is not None:
            kwargs["temperature"] = temperature
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = "auto"
        if extra:
            kwargs["extra_body"] = extra
        if on_progress is None and (heartbeat := ActivityHeartbeat.for_activity()) is not None:
            async with heartbeat:
                return await self._call(kwargs, heartbeat)
        return await self._call(kwargs, on_progress)

    async def _call(self, kwargs: dict[str, Any], on_progress: ProgressHook | None) -> LLMReply:
        """Wait for a slot at the endpoint, stream the answer, and tell the limiter how the endpoint coped."""
        limiter = limiter_for(self.base_url, self.max_concurrency)
        slot = await limiter.acquire((lambda: on_progress(WAITING_FOR_MODEL)) if on_progress else None)
        outcome = Outcome.FAILED
        try:
            if slot.waited and on_progress:
                on_progress(STREAMING)
            answer = await self._stream(kwargs, on_progress)
            outcome = Outcome.SERVED
        except ApplicationError as error:
            if error.type == "RateLimited":
                outcome = Outcome.RATE_LIMITED
            raise
        finally:
            slot.release(outcome)
        return answer.reply()

    async def _stream(self, kwargs: dict[str, Any], on_progress: ProgressHook | None) -> _Answer:
        """The chunks of one answer; fails when the endpoint is silent for the idle timeout, or the whole answer
        runs past the ceiling."""
        loop = asyncio.get_running_loop()
        ceiling_at = loop.time() + self.timeout_s
        answer = _Answer()
        try:
            async with asyncio.timeout_at(min(loop.time() + self.idle_timeout_s, ceiling_at)) as deadline:
                stream = await self._client.chat.completions.create(**kwargs)
                async with stream:
                    async for chunk in stream:
                        deadline.reschedule(min(loop.time() + self.idle_timeout_s, ceiling_at))
                        answer.add(chunk)
                        if on_progress is not None:
                            on_progress(STREAMING)
        except TimeoutError as error:
            if loop.time() >= ceiling_at:
                raise ApplicationError(
                    f"The LLM call ran past its {self.timeout_s:g}s ceiling ({answer.chunks} chunks so far); "
                    "raise SWARMKEEP_LLM_TIMEOUT_S for answers this long",
                    type="LLMTimeout",
                ) from error
            where = f"after {answer.chunks} chunks" if answer.chunks else "before its first chunk"
            raise ApplicationError(
                f"The LLM endpoint went silent for {self.idle_timeout_s:g}s {where} "
                "(SWARMKEEP_LLM_IDLE_TIMEOUT_S); the attempt is retried",
                type="LLMIdleTimeout",
            ) from error
        except openai.OpenAIError as error:
            # A bare APIError is an error event inside the stream; the others come at its opening.
            if type(error) is openai.APIError:
                raise mid_stream_error(error) from error
            raise to_activity_error(error) from error
        except httpx.HTTPError as error:  # the connection broke mid-answer; the SDK passes these through
            raise ApplicationError(
                f"The LLM stream broke off after {answer.chunks} chunks: {error!r}", type="LLMStreamBroken"
            ) from error
        return answer

    def assistant_message(self, reply: LLMReply) -> dict[str, Any]:
        """The assistant turn to send back next time: content and tool calls (ids kept as the model gave them,
        e.g. Kimi's `functions.NAME:IDX`), and the reasoning too when a Kimi model's thinking is preserved."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
                for call in reply.tool_calls
            ]
            if reply.reasoning and self.thinking and is_kimi_model(self.model):
                message["reasoning_content"] = reply.reasoning
        return message

    async def close(self) -> None:
        await self._client.close()
