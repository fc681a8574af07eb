"""`swarmkeep model ...`: serve a model profile, list profiles, prepare models, quantize MoE checkpoints."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from swarmkeep.cli.signals import StopSignals
from swarmkeep.settings import get_settings

app = typer.Typer(help="Local models: serve a profile, list profiles, quantize MoE checkpoints.", no_args_is_help=True)
console = Console()

ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="Serving profile (default: SWARMKEEP_MODEL_PROFILE, else cpu-small)."),
]


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


def shell_command(argv: list[str], env: dict[str, str]) -> str:
    """The command as one shell line: the variables it adds to this environment, then the argv."""
    added = {k: v for k, v in env.items() if os.environ.get(k) != v}
    return shlex.join([*(f"{k}={v}" for k, v in sorted(added.items())), *argv])


@app.command("serve")
def serve(
    profile: ProfileOption = None,
    dry_run: Annotated[bool, typer.Option(help="Print the command and exit (no hardware check, no start).")] = False,
) -> None:
    """Prepare and serve a model profile alone until Ctrl-C; print the exact command first."""
    from swarmkeep.inference.model_prep import LocalModelError
    from swarmkeep.inference.profiles import ProfileServer, get_profile, profile_server

    settings = get_settings()
    try:
        if dry_run:
            name = profile or getattr(settings, "model_profile", None) or "cpu-small"
            spec = get_profile(name, getattr(settings, "model_profiles", None) or {})
            model = spec.model or f"<{spec.builtin} prepared in {settings.effective_model_dir}>"
            shown = ProfileServer(
                name, spec, model, port=settings.local_model_port, log_file=settings.data_dir / "logs" / "model.log"
            )
            console.print("$ " + shell_command(shown.command(), shown.env()), soft_wrap=True)
            return
    except LocalModelError as error:
        _fail(str(error))
    failure: str | None = None
    server: ProfileServer | None = None
    with StopSignals() as signals:
        try:
            server = profile_server(settings, profile, say=console.print)
            console.print(f"Profile {server.name}: {server.spec.description}")
            console.print("$ " + shell_command(server.command(), server.env()), soft_wrap=True)
            console.print(f"Logs: {server.log_file}")
            server.start()
            waited = server.wait_healthy()
            console.print(
                f"[green]Serving[/] {server.served_model_name} at {server.base_url} after {waited:.0f} s (Ctrl-C stops)"
            )
            if server.spec.builtin == "smollm2-moe-int4":
                where = "swarmkeep's INT4 kernels" if server.uses_swarmkeep_kernels() else "vLLM's own kernels"
                console.print(f"MoE layers run on {where} (see {server.log_file})")
            while server.running():
                time.sleep(0.5)
            failure = f"The model server exited on its own. Last lines of {server.log_file}:\n{server.log_tail()}"
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM / SIGHUP (StopSignals)
            pass
        except LocalModelError as error:
            failure = str(error)
        finally:
            signals.cleaning_up()
            if server is not None:
                console.print("Stopping the model server ...")
                server.stop()
    if failure is not None:
        _fail(failure)


@app.command("profiles")
def list_profiles() -> None:
    """List the serving profiles: built-in ones and those in SWARMKEEP_MODEL_PROFILES."""
    from swarmkeep.inference.model_prep import LocalModelError
    from swarmkeep.inference.profiles import profiles

    settings = get_settings()
    try:
        known = profiles(getattr(settings, "model_profiles", None) or {})
    except LocalModelError as error:
        _fail(str(error))
    current = getattr(settings, "model_profile", None) or "cpu-small"
    table = Table("profile", "device", "served as", "description")
    for name, spec in known.items():
        device = f"{spec.gpus} x GPU" if spec.device == "cuda" else "CPU"
        label = name + (" (current)" if name == current else "")
        table.add_row(label, device, spec.served_model_name, spec.description)
    console.print(table)


@app.command("prepare")
def prepare(profile: ProfileOption = None) -> None:
    """Build a profile's built-in model now (conversion, upcycling, quantization) without serving it."""
    from swarmkeep.inference.model_prep import LocalModelError
    from swarmkeep.inference.profiles import get_profile, prepare_model

    settings = get_settings()
    name = profile or getattr(settings, "model_profile", None) or "cpu-small"
    try:
        spec = get_profile(name, getattr(settings, "model_profiles", None) or {})
        console.print(f"{name}: {prepare_model(spec, settings.effective_model_dir, console.print)}")
    except LocalModelError as error:
        _fail(str(error))


@app.command("quantize")
def quantize(
    source: Annotated[Path, typer.Argument(help="bf16 MoE checkpoint folder (DeepSeek-V3, Mixtral or Qwen-MoE).")],
    target: Annotated[Path, typer.Argument(help="Output folder for the Kimi-format INT4 checkpoint.")],
    force: Annotated[bool, typer.Option(help="Replace the output folder if it exists.")] = False,
) -> None:
    """Quantize a bf16 MoE checkpoint to the Kimi INT4 format: routed experts INT4, the rest bf16."""
    from swarmkeep.inference.quantize import QuantizeError, quantize_checkpoint

    try:
        report = quantize_checkpoint(source, target, force=force, progress=console.print)
    except QuantizeError as error:
        _fail(str(error))
    console.print(
        f"[green]Wrote[/] {report.output}: {report.architecture}, {report.quantized_weights} expert weights INT4, "
        f"{report.kept_tensors} tensors kept, {report.input_bytes / 2**20:.0f} MiB -> "
        f"{report.output_bytes / 2**20:.0f} MiB in {report.shards} shard(s)"
    )
