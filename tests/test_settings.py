"""Settings: defaults, the hard cap, and where each value came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from swarmkeep.settings import HARD_MAX_PARALLEL, Settings, display_value, setting_sources


def test_defaults_point_at_the_embedded_stack(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'swarmkeep.db'}"
    assert settings.uses_dev_server and settings.uses_local_model
    assert settings.max_parallel == 32
    assert settings.job_ui_link("job_1") == "http://127.0.0.1:8233/namespaces/default/workflows/job_1"


def test_the_bundled_model_gets_a_job_its_size(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local = Settings(data_dir=tmp_path)
    assert (local.max_subtasks, local.max_steps, local.llm_max_tokens, local.hedging) == (5, 2, 256, False)
    remote = Settings(data_dir=tmp_path, llm_base_url="https://api.moonshot.ai/v1")
    assert (remote.max_subtasks, remote.max_steps, remote.llm_max_tokens, remote.hedging) == (12, 4, 400, True)
    assert Settings(data_dir=tmp_path, min_subtasks=6).max_subtasks == 6  # never below the floor
    monkeypatch.setenv("SWARMKEEP_MAX_STEPS", "3")
    assert Settings(data_dir=tmp_path).max_steps == 3  # what the user sets wins


def test_parallel_limit_is_capped() -> None:
    assert Settings(max_parallel=HARD_MAX_PARALLEL).max_parallel == 300
    with pytest.raises(ValidationError, match="capped at 300"):
        Settings(max_parallel=301)


def test_sources_name_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMKEEP_MAX_STEPS", "7")
    monkeypatch.setenv("SWARMKEEP_LLM_API_KEY", "secret")
    settings = Settings()
    sources = setting_sources(settings)
    assert settings.max_steps == 7
    assert sources["max_steps"] == "environment (SWARMKEEP_MAX_STEPS)"
    assert sources["task_queue"] == "default"
    assert display_value(settings, "llm_api_key") == "****"


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"SWARMKEEP_{name.upper()}" not in readme]
    assert not missing, f"README.md does not document: {missing}"
