"""What vLLM's kimi_k2 parsers and Moonshot's API emit: `functions.NAME:IDX` tool-call ids, `reasoning` next
to content, `reasoning_content`; and reasoning sent back on assistant tool-call turns when thinking is kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarmkeep.inference.client import LLMClient
from tests.support.scripted_llm import stream_chunks

RECORDED = Path(__file__).parent / "support" / "recorded"


def client_answering(recording: str, seen: list[dict[str, Any]], *, model: str, thinking: bool) -> LLMClient:
    """An LLMClient whose HTTP transport answers with a recorded response and keeps the requests it got."""
    # Recorded whole; the client streams, so the server's chunks are made from it as vLLM would stream them.
    completion = json.loads((RECORDED / recording).read_text())
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in stream_chunks(completion, 7)) + "data: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    client = LLMClient(base_url="http://kimi.test/v1", api_key="k", model=model, timeout_s=5, thinking=thinking)
    client._client = client._client.with_options(http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    return client


@pytest.mark.parametrize(
    ("recording", "reasoning", "calls"),
    [
        (
            "vllm_kimi_k2_tool_call.json",
            "The user wants prices; I should search first.",
            [("functions.web_search:0", "web_search", {"query": "green tea price per kg 2026"}),
             ("functions.fetch_url:1", "fetch_url", {"url": "https://example.org/tea"})],
        ),
        (
            "moonshot_reasoning_content.json",
            "I need the table before I can compute the average.",
            [("functions.read_table:0", "read_table", {"filename": "prices.xlsx"})],
        ),
    ],
)  # fmt: skip
async def test_both_shapes_are_read(recording: str, reasoning: str, calls: list[tuple[str, str, dict]]) -> None:
    seen: list[dict[str, Any]] = []
    client = client_answering(recording, seen, model="kimi-k2.6", thinking=True)
    reply = await client.chat([{"role": "user", "content": "hi"}], max_tokens=100, tools=[])
    assert reply.reasoning == reasoning
    assert [(c["id"], c["name"], c["arguments"]) for c in reply.tool_calls or []] == calls
    assert reply.finish_reason == "tool_calls"
    # Kimi's thinking switch went out with the request
    assert seen[0]["thinking"] == {"type": "enabled"} and seen[0]["chat_template_kwargs"] == {"thinking": True}


async def test_reasoning_goes_back_on_tool_call_turns_only_when_thinking_is_kept() -> None:
    seen: list[dict[str, Any]] = []
    thinking = client_answering("moonshot_reasoning_content.json", seen, model="kimi-k2.6", thinking=True)
    reply = await thinking.chat([{"role": "user", "content": "hi"}], max_tokens=100)
    turn = thinking.assistant_message(reply)
    assert turn["reasoning_content"] == "I need the table before I can compute the average."
    assert turn["tool_calls"][0]["id"] == "functions.read_table:0"
    assert json.loads(turn["tool_calls"][0]["function"]["arguments"]) == {"filename": "prices.xlsx"}
    # sent back verbatim in the next request
    await thinking.chat([{"role": "user", "content": "hi"}, turn], max_tokens=100)
    assert seen[1]["messages"][1]["reasoning_content"] == turn["reasoning_content"]

    plain = client_answering("moonshot_reasoning_content.json", [], model="kimi-k2.6", thinking=False)
    assert "reasoning_content" not in plain.assistant_message(await plain.chat([], max_tokens=10))
    other = client_answering("vllm_kimi_k2_tool_call.json", [], model="some-other-model", thinking=True)
    assert "reasoning_content" not in other.assistant_message(await other.chat([], max_tokens=10))
