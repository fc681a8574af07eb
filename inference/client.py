"""LLM client: the `openai` SDK with its own retries off, so Temporal owns every retry."""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import openai
from openai import AsyncOpenAI
from temporalio.exceptions import ApplicationError

from swarmkeep.settings import Settings

DEFAULT_RETRY_AFTER_S = 5.0


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
        # A request the endpoint rejects as malformed or unauthorised fails the same way every time.
        permanent = status in (400, 401, 403, 404, 422)
        return ApplicationError(
            f"The LLM endpoint answered {status}: {error.message}",
            type=f"LLMHttp{status}",
            non_retryable=permanent,
        )
    return ApplicationError(f"The LLM call failed: {error}", type="LLMError")


def checked_tool_calls(tool_calls: Any) -> list[dict[str, Any]] | None:
    """Tool calls as plain dicts with parsed arguments; a malformed one fails the attempt so it is retried."""
    if not tool_calls:
        return None
    checked = []
    for call in tool_calls:
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        try:
            arguments = json.loads(getattr(function, "arguments", None) or "{}")
        except json.JSONDecodeError as error:
            raise ApplicationError(
                f"The model returned a malformed tool call ({name}: arguments are not JSON: {error.msg})",
                type="MalformedToolCall",
            ) from error
        if not name or not isinstance(arguments, dict):
            raise ApplicationError(f"The model returned a malformed tool call ({call!r})", type="MalformedToolCall")
        checked.append({"id": call.id, "name": name, "arguments": arguments})
    return checked


class LLMClient:
    """Chat completions against any OpenAI-compatible endpoint, counting tokens per call."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout_s: float,
        thinking: bool = False,
        writing: dict[str, float] | None = None,
    ):
        self.model = model
        self.thinking = thinking
        self.writing = dict(writing or {})  # sampling of prose calls (chat(writing=True)); see profiles.py
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        from swarmkeep.inference.profiles import writing_sampling  # light: no vLLM or torch import

        return cls(
            base_url=settings.effective_llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            model=settings.effective_llm_model,
            timeout_s=settings.llm_timeout_s,
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
    ) -> LLMReply:
        """One chat completion (with this client's model unless `model` is given); SDK errors come out as
        Temporal `ApplicationError`s. `writing` marks a call that writes prose, sampled as the client's
        `writing` settings say."""
        kwargs: dict[str, Any] = {"model": model or self.model, "messages": messages, "max_tokens": max_tokens}
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
        try:
            completion = await self._client.chat.completions.create(**kwargs)
        except openai.OpenAIError as error:
            raise to_activity_error(error) from error
        if not completion.choices:
            raise ApplicationError("The LLM endpoint returned no choices", type="LLMEmpty")
        choice = completion.choices[0]
        message = choice.message
        extra_fields = message.model_extra or {}
        reasoning = extra_fields.get("reasoning_content") or extra_fields.get("reasoning")
        usage = completion.usage
        return LLMReply(
            content=message.content or "",
            reasoning=reasoning,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason,
            tool_calls=checked_tool_calls(message.tool_calls),
        )

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
