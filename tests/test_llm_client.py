"""The LLM client: Temporal-shaped errors, Retry-After, reasoning fields and Kimi options."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from temporalio.exceptions import ApplicationError

from swarmkeep.activities.planner import mend_dependencies, parse_plan
from swarmkeep.activities.prompts import extract_conclusion
from swarmkeep.inference.client import LLMClient, retry_after_seconds, to_activity_error
from swarmkeep.inference.profiles import writing_sampling
from swarmkeep.settings import Settings


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
