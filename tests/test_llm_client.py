"""The LLM client: Temporal-shaped errors, Retry-After, reasoning fields and Kimi options."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from temporalio.exceptions import ApplicationError

from swarmkeep.activities.planner import mend_dependencies, parse_plan
from swarmkeep.activities.prompts import extract_conclusion
from swarmkeep.inference.client import LLMClient, retry_after_seconds, to_activity_error
from swarmkeep.inference.limiter import AIMDLimiter, Outcome, limiter_for
from swarmkeep.inference.profiles import writing_sampling
from swarmkeep.settings import Settings
from tests.support.scripted_llm import Fault, Script, ScriptedLLM, stream_chunks


def completion_of(content: str) -> dict[str, object]:
    message = {"role": "assistant", "content": content}
    return {"id": "c", "created": int(time.time()), "model": "m", "usage": {},
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip


def status_error(
    cls: type[openai.APIStatusError], status: int, headers: dict[str, str], message: str = "boom"
) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(status, headers=headers, request=request)
    return cls(message, response=response, body=None)


def test_rate_limit_becomes_retry_with_the_servers_delay() -> None:
    error = to_activity_error(status_error(openai.RateLimitError, 429, {"retry-after": "7"}))
    assert error.next_retry_delay == timedelta(seconds=7)
    assert not error.non_retryable


def test_retry_after_forms() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(httpx.Headers({"retry-after": "2.5"})) == 2.5
    assert retry_after_seconds(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_seconds(httpx.Headers({})) == 5.0


def test_server_errors_retry_but_bad_requests_do_not() -> None:
    assert not to_activity_error(status_error(openai.InternalServerError, 503, {})).non_retryable
    assert to_activity_error(status_error(openai.BadRequestError, 400, {})).non_retryable


def test_a_prompt_over_the_context_is_its_own_error() -> None:
    vllm = "This model's maximum context length is 4096 tokens. However, your prompt contains 4097 input tokens."
    error = to_activity_error(status_error(openai.BadRequestError, 400, {}, vllm))
    assert (error.type, error.non_retryable) == ("LLMContextTooLong", True)
    assert to_activity_error(status_error(openai.BadRequestError, 400, {})).type == "LLMHttp400"


def test_kimi_models_get_thinking_options_and_others_none() -> None:
    kimi = LLMClient(base_url="http://x/v1", api_key="k", model="kimi-k2.6", timeout_s=5, thinking=True)
    assert kimi._extra_body() == {"thinking": {"type": "enabled"}, "chat_template_kwargs": {"thinking": True}}
    other = LLMClient(base_url="http://x/v1", api_key="k", model="smollm2", timeout_s=5)
    assert other._extra_body() is None


def test_client_has_sdk_retries_off() -> None:
    client = LLMClient(base_url="http://x/v1", api_key="", model="m", timeout_s=5)
    assert client._client.max_retries == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("thinking...\nCONCLUSION: the answer", ("the answer", True)),
        ("no mark here", ("no mark here", False)),
        ("CONCLUSION: " + "x" * 50, ("x" * 19 + "…", True)),
    ],
)
def test_extract_conclusion(text: str, expected: tuple[str, bool]) -> None:
    assert extract_conclusion(text, 20) == expected


def test_parse_plan_explains_unreadable_answers() -> None:
    assert parse_plan("nope")[1].startswith("the answer is not valid JSON")
    assert parse_plan('{"x": 1}')[1] == "the answer has no 'subtasks' list"
    assert "lacks role" in parse_plan('{"subtasks": [{"id": "a", "instruction": "i"}]}')[1]
    plan, problem = parse_plan('{"subtasks": [{"id": " a ", "role": "coder", "instruction": "i"}]}')
    assert problem is None and plan == [{"id": "a", "role": "coder", "instruction": "i", "depends_on": []}]


def test_parse_plan_mends_repeated_ids_and_self_dependencies() -> None:
    text = (
        '{"subtasks": [{"id": "s1", "role": "coder", "instruction": "a", "depends_on": ["s1"]},'
        ' {"id": "s1", "role": "coder", "instruction": "b", "depends_on": ["s1"]}]}'
    )
    plan, problem = parse_plan(text)
    assert problem is None
    assert [(p["id"], p["depends_on"]) for p in plan] == [("s1", []), ("s1_2", ["s1"])]


def test_last_plan_keeps_only_dependencies_on_earlier_subtasks() -> None:
    cyclic = [
        {"id": "a", "role": "coder", "instruction": "i", "depends_on": ["c"]},
        {"id": "b", "role": "coder", "instruction": "i", "depends_on": ["a", "zz"]},
        {"id": "c", "role": "coder", "instruction": "i", "depends_on": ["b"]},
    ]
    assert mend_dependencies(cyclic) == ["a -> c", "b -> zz"]
    assert [p["depends_on"] for p in cyclic] == [[], ["a"], ["b"]]
    forward_but_acyclic = [
        {"id": "w", "role": "writer", "instruction": "i", "depends_on": ["r"]},
        {"id": "r", "role": "researcher", "instruction": "i", "depends_on": []},
    ]
    assert mend_dependencies(forward_but_acyclic) == []  # a usable plan is left exactly as it is
    assert forward_but_acyclic[0]["depends_on"] == ["r"]


async def test_prose_calls_take_the_writing_sampling_and_the_others_do_not() -> None:
    client = LLMClient(
        base_url="http://127.0.0.1:9/v1",
        api_key="",
        model="m",
        timeout_s=1,
        writing={"temperature": 0.3, "top_p": 0.9, "repetition_penalty": 1.1},
    )
    sent: list[dict[str, object]] = []

    async def create(**kwargs: object) -> None:
        sent.append(kwargs)
        raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))

    client._client.chat.completions.create = create  # type: ignore[method-assign,assignment]
    for writing in (True, False):
        with pytest.raises(ApplicationError):
            await client.chat([{"role": "user", "content": "hi"}], max_tokens=8, writing=writing)
    prose, plan = sent
    assert (prose["temperature"], prose["top_p"], prose["extra_body"]) == (0.3, 0.9, {"repetition_penalty": 1.1})
    assert "temperature" not in plan and "top_p" not in plan and "extra_body" not in plan


def test_writing_sampling_is_the_bundled_models_and_none_for_an_endpoint(tmp_path: Path) -> None:
    local = Settings(data_dir=tmp_path)
    assert writing_sampling(local) == {"temperature": 0.3, "top_p": 0.9, "repetition_penalty": 1.1}
    assert writing_sampling(Settings(data_dir=tmp_path, llm_base_url="https://api.moonshot.ai/v1")) == {}


# Streaming, idle timeouts and the per-endpoint limit, against the scripted server over real HTTP.

SUBAGENT_CALL = [
    {"role": "system", "content": "You are a researcher."},
    {"role": "user", "content": "Your subtask: Do part s1."},
]


def scripted_client(server: ScriptedLLM, *, idle_timeout_s: float = 5.0, max_concurrency: int = 50) -> LLMClient:
    return LLMClient(
        base_url=server.base_url,
        api_key="",
        model="scripted",
        timeout_s=60,
        idle_timeout_s=idle_timeout_s,
        max_concurrency=max_concurrency,
    )


async def test_a_streamed_answer_is_put_back_together_with_its_usage(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reset(Script(filler_chars=100, chunk_chars=7))
    heard: list[str] = []
    reply = await scripted_client(scripted_llm).chat(SUBAGENT_CALL, max_tokens=50, on_progress=heard.append)
    assert reply.content == "Work on s1, step 1: drafting. " + "x" * 100
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == (10, 5, "stop")
    assert scripted_llm.calls("subagent")[0]["body"]["stream"] is True
    assert len(heard) > 10 and set(heard) == {"streaming"}  # one per chunk; no wait for a slot


async def test_streamed_tool_calls_are_put_back_together(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reset(Script(tool_plan={"s1": [("web_search", {"query": "green tea " * 5})]}, chunk_chars=5))
    tools = [{"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}}]
    reply = await scripted_client(scripted_llm).chat(SUBAGENT_CALL, max_tokens=50, tools=tools)
    assert reply.tool_calls == [{"id": "functions.web_search:0", "name": "web_search",
                                 "arguments": {"query": "green tea " * 5}}]  # fmt: skip
    assert reply.finish_reason == "tool_calls"


async def test_a_slow_but_steady_stream_is_not_cut_off(scripted_llm: ScriptedLLM) -> None:
    # Every chunk comes well inside the idle timeout; all of them together take several times it.
    scripted_llm.reset(Script(filler_chars=400, faults=[Fault("subagent", 200, chunk_delay_s=0.1)]))
    chunks = len(stream_chunks(completion_of("x" * 430)))
    assert chunks * 0.1 > 3 * 0.5
    reply = await scripted_client(scripted_llm, idle_timeout_s=0.5).chat(SUBAGENT_CALL, max_tokens=50)
    assert reply.content.endswith("x" * 400)


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault("subagent", 200, after_chunks=3, stall_s=math.inf), "LLMIdleTimeout"),
        (Fault("subagent", 200, stall_s=math.inf, after_chunks=0), "LLMIdleTimeout"),
        (Fault("subagent", 200, after_chunks=3, drop=True), "LLMStreamBroken"),
        (Fault("subagent", 503, after_chunks=3), "LLMHttp503"),
        (Fault("subagent", 503), "LLMHttp503"),
    ],
)
async def test_a_stream_that_goes_wrong_fails_the_call_retryably(
    scripted_llm: ScriptedLLM, fault: Fault, error_type: str
) -> None:
    scripted_llm.reset(Script(filler_chars=100, faults=[fault]))
    with pytest.raises(ApplicationError) as caught:
        await scripted_client(scripted_llm, idle_timeout_s=0.5).chat(SUBAGENT_CALL, max_tokens=50)
    assert caught.value.type == error_type and not caught.value.non_retryable


@pytest.mark.parametrize("after_chunks", [None, 2])
async def test_a_429_at_the_opening_or_mid_answer_is_rate_limited_and_halves_the_limit(
    scripted_llm: ScriptedLLM, after_chunks: int | None
) -> None:
    scripted_llm.reset(Script(faults=[Fault("subagent", 429, retry_after=3, after_chunks=after_chunks)]))
    client = scripted_client(scripted_llm, max_concurrency=14)
    with pytest.raises(ApplicationError) as caught:
        await client.chat(SUBAGENT_CALL, max_tokens=50)
    assert caught.value.type == "RateLimited" and not caught.value.non_retryable
    assert caught.value.next_retry_delay == timedelta(seconds=3 if after_chunks is None else 5)
    limiter = limiter_for(scripted_llm.base_url, 14)
    assert limiter.limit == 7 and limiter.in_flight == 0
    await client.chat(SUBAGENT_CALL, max_tokens=50)
    assert limiter.limit == 8  # won back, one call at a time
    limiter.set_ceiling(1)  # the next test starts from its own ceiling


async def test_a_prompt_over_the_context_fails_for_good_on_a_stream(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reset(Script(context_chars=10))
    with pytest.raises(ApplicationError) as caught:
        await scripted_client(scripted_llm).chat(SUBAGENT_CALL, max_tokens=50)
    assert (caught.value.type, caught.value.non_retryable) == ("LLMContextTooLong", True)


async def test_concurrent_calls_through_one_client_keep_to_the_endpoints_limit(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reset(Script(filler_chars=40, chunk_delay_s=0.02))
    client = scripted_client(scripted_llm, max_concurrency=3)
    heard: list[list[str]] = [[] for _ in range(12)]
    replies = await asyncio.gather(
        *(client.chat(SUBAGENT_CALL, max_tokens=50, on_progress=heard[i].append) for i in range(12))
    )
    assert len(replies) == 12 and all(r.finish_reason == "stop" for r in replies)
    assert scripted_llm.max_in_flight == 3  # reached, never passed
    waited = [h for h in heard if h and h[0] == "waiting_for_model"]
    assert len(waited) >= 9 - 1 and all(h[1] == "streaming" for h in waited)
    limiter = limiter_for(scripted_llm.base_url, 3)
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


async def test_aimd_limit_halves_on_429_recovers_on_success_and_queues_in_order() -> None:
    limiter = AIMDLimiter(8)
    slots = [await limiter.acquire() for _ in range(8)]
    assert all(not s.waited for s in slots) and limiter.in_flight == 8
    waits: list[int] = []
    queued = [asyncio.create_task(limiter.acquire(lambda i=i: waits.append(i))) for i in range(3)]  # type: ignore[misc]
    await asyncio.sleep(0)
    assert waits == [0, 1, 2] and limiter.waiting == 3
    # A burst of 429s from calls in flight together is one signal: halved once, not three times.
    for slot in slots[:3]:
        slot.release(Outcome.RATE_LIMITED)
    assert limiter.limit == 4 and limiter.in_flight == 5 and limiter.waiting == 3  # over the new limit: none let in
    slots[3].release(Outcome.FAILED)  # a failure says nothing about capacity
    slots[4].release(Outcome.SERVED)  # 5 after the success, 3 in flight: two waiters let in, first come first
    assert limiter.limit == 5 and limiter.in_flight == 5
    assert [task.done() for task in queued[:2]] == [False, False]
    await asyncio.sleep(0)
    assert [task.done() for task in queued] == [True, True, False]
    queued[2].cancel()  # a waiter that gives up leaves the queue
    await asyncio.gather(queued[2], return_exceptions=True)
    assert limiter.waiting == 0
    first, second = await queued[0], await queued[1]
    first.release(Outcome.RATE_LIMITED)  # it started after the decrease: a new signal, halved again
    assert limiter.limit == 2.5
    for slot in [second, *slots[5:]]:
        slot.release(Outcome.FAILED)
    assert limiter.in_flight == 0
    for _ in range(20):
        (await limiter.acquire()).release(Outcome.SERVED)
    assert limiter.limit == 8  # back at the ceiling, never above
