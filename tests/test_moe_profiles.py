"""Serving profiles: commands, custom profiles from settings, clear errors when hardware is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from swarmkeep.cli.model import app
from swarmkeep.inference.model_server import LocalModelServer
from swarmkeep.inference.profiles import (
    BUILTIN_PROFILES,
    ProfileError,
    ProfileServer,
    check_hardware,
    get_profile,
    profiles,
)


def _server(name: str, model: str = "/models/m", **custom: dict[str, object]) -> ProfileServer:
    spec = get_profile(name, custom)
    return ProfileServer(name, spec, model, port=8123, log_file=Path("/tmp/unused.log"))


def test_cpu_small_runs_the_command_it_always_ran(tmp_path: Path) -> None:
    before = LocalModelServer(tmp_path, port=8123, log_file=tmp_path / "log").command()
    assert _server("cpu-small", str(tmp_path)).command() == before


def test_cpu_moe_int4_serves_its_own_name_with_the_backend_setting(tmp_path: Path) -> None:
    server = ProfileServer(
        "cpu-moe-int4", get_profile("cpu-moe-int4"), str(tmp_path), port=1, log_file=tmp_path / "l",
        int4_moe_backend="swarmkeep",
    )  # fmt: skip
    argv = server.command()
    assert argv[argv.index("--served-model-name") + 1] == "smollm2-moe-int4"
    assert "--enforce-eager" in argv and argv[argv.index("--dtype") + 1] == "bfloat16"
    assert server.env()["SWARMKEEP_INT4_MOE_BACKEND"] == "swarmkeep"


def test_kimi_command() -> None:
    argv = _server("kimi-k2.6", "moonshotai/Kimi-K2.6").command()
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--tool-call-parser") + 1] == "kimi_k2"
    assert argv[argv.index("--reasoning-parser") + 1] == "kimi_k2"
    assert {"--enable-auto-tool-choice", "--trust-remote-code"} <= set(argv)
    assert "--enforce-eager" not in argv and "--dtype" not in argv  # CUDA graphs on, the checkpoint's dtypes


def test_missing_gpus_is_a_clear_error() -> None:
    with pytest.raises(ProfileError, match=r"needs 8 NVIDIA GPUs but this machine has 2.*SWARMKEEP_LLM_BASE_URL"):
        check_hardware("kimi-k2.6", BUILTIN_PROFILES["kimi-k2.6"], gpu_count=lambda: 2)


def test_custom_profiles_add_and_override() -> None:
    custom = {
        "my-qwen": {"model": "/models/qwen", "served_model_name": "qwen", "args": ["--max-num-seqs", "4"]},
        "kimi-k2.6": {"model": "/data/kimi-k2.6"},
    }
    known = profiles(custom)
    assert known["my-qwen"].device == "cpu" and known["my-qwen"].args == ("--max-num-seqs", "4")
    assert known["kimi-k2.6"].model == "/data/kimi-k2.6" and known["kimi-k2.6"].gpus == 8
    argv = _server("my-qwen", "/models/qwen", **custom).command()  # type: ignore[arg-type]
    assert argv[-2:] == ["--max-num-seqs", "4"]
    with pytest.raises(ProfileError, match="not a valid profile"):
        profiles({"bad": {"served_model_name": "x", "gpus": -1}})
    with pytest.raises(ProfileError, match="Known profiles: cpu-small, cpu-moe-int4, kimi-k2.6, my-qwen"):
        get_profile("nope", custom)


def test_cli_dry_run_and_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--profile", "kimi-k2.6", "--dry-run"])
    assert result.exit_code == 0 and "--tool-call-parser kimi_k2" in " ".join(result.output.split())
    result = runner.invoke(app, ["serve", "--profile", "nope"])
    assert result.exit_code == 1 and "Unknown model profile" in result.output
    result = runner.invoke(app, ["profiles"])
    assert result.exit_code == 0 and "cpu-moe-int4" in result.output
