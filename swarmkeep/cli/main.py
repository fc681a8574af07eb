"""The `swarmkeep` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from swarmkeep.cli.api_client import ApiClient, ApiError
from swarmkeep.cli.model import app as model_app
from swarmkeep.cli.render import print_job, watch_job
from swarmkeep.cli.signals import StopSignals
from swarmkeep.settings import display_value, get_settings, setting_sources

app = typer.Typer(help="swarmkeep: a durable, self-hostable agent swarm.", no_args_is_help=True)
jobs_app = typer.Typer(help="List, show and cancel jobs.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys (run where the job store is).", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(model_app, name="model")
app.add_typer(keys_app, name="keys")
console = Console()


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


def _api() -> ApiClient:
    """A client for the configured API with the configured key, or the local development key."""
    from swarmkeep.store.keys import read_dev_key

    settings = get_settings()
    key = settings.api_key.get_secret_value() or read_dev_key(settings.data_dir)
    return ApiClient(settings.effective_api_url, key)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def config() -> None:
    """Print the effective settings and where each came from."""
    settings = get_settings()
    sources = setting_sources(settings)
    table = Table("setting", "value", "source")
    for name in type(settings).model_fields:
        table.add_row(f"SWARMKEEP_{name.upper()}", str(display_value(settings, name)), sources[name])
    console.print(table)


@app.command()
def migrate() -> None:
    """Create or upgrade the job store's tables (Alembic, to head)."""
    from swarmkeep.store.engine import run_once
    from swarmkeep.store.migrate import upgrade

    settings = get_settings()
    run_once(upgrade(settings.effective_database_url))
    console.print(f"Job store migrated: {settings.shown_database_url}")


@app.command()
def worker() -> None:
    """Run a worker: it polls the task queue and runs jobs' workflows and sub-agents."""
    from swarmkeep.store.migrate import DatabaseNotMigratedError
    from swarmkeep.worker import run_worker

    _logging()
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(get_settings(), stop)

    try:
        asyncio.run(main())
    except DatabaseNotMigratedError as error:
        _fail(str(error))


@app.command()
def api() -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from swarmkeep.api.app import create_app
    from swarmkeep.store.engine import run_once
    from swarmkeep.store.migrate import DatabaseNotMigratedError, require_migrated

    settings = get_settings()
    try:
        run_once(require_migrated(settings.effective_database_url))
    except DatabaseNotMigratedError as error:
        _fail(str(error))
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


@app.command()
def up() -> None:
    """Start everything on this machine: Temporal dev server, migrations, local model, worker, API. Ctrl-C stops."""
    from swarmkeep.services.stack import LocalStack

    settings = get_settings()
    stack = LocalStack(settings, say=console.print)
    failure: str | None = None
    with StopSignals() as signals:
        try:
            stack.start_all()
            console.print(
                f'[green]swarmkeep is up.[/] Submit with: swarmkeep run "your task"  (logs in {stack.log_dir})'
            )
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM / SIGHUP (StopSignals)
            pass
        except Exception as error:
            failure = str(error)
        finally:
            signals.cleaning_up()
            console.print("Stopping ...")
            stack.stop()
    if failure is not None:
        _fail(failure)


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="What the swarm should do.")],
    max_parallel: Annotated[int | None, typer.Option(help="Most sub-agents at once.")] = None,
    keep_running: Annotated[bool, typer.Option(help="Leave the services this command started running.")] = False,
) -> None:
    """Submit a job (starting what is needed), watch its sub-agents, and print the result."""
    from swarmkeep.services.stack import LocalStack

    settings = get_settings()
    stack: LocalStack | None = None
    with StopSignals() as signals:
        try:
            if not _api().reachable():
                console.print(f"No API at {settings.effective_api_url}: starting the local stack ...")
                stack = LocalStack(settings, say=console.print, outlive=keep_running)
                stack.start_all()
            api = _api()
            job = api.create_job(task, max_parallel)
            ui = job["links"].get("temporal_ui")
            console.print(f"Submitted [bold]{job['id']}[/]" + (f" · Temporal UI: {ui}" if ui else ""))
            final = watch_job(api, job["id"], console, settings.max_steps)
            console.print()
            print_job(final, console)
            if final["status"] != "succeeded":
                raise typer.Exit(1)
        except ApiError as error:
            _fail(str(error))
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM / SIGHUP (StopSignals)
            if stack is not None and not keep_running:
                console.print("Interrupted; the job is kept in Temporal and goes on when a worker runs again.")
            else:
                console.print("Interrupted; the job goes on in Temporal (see `swarmkeep jobs show`).")
            raise typer.Exit(128 + getattr(interrupt, "signum", signal.SIGINT)) from None
        finally:
            signals.cleaning_up()
            if stack is not None and not keep_running:
                console.print("Stopping the services this command started ...")
                stack.stop()


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
) -> None:
    """List jobs, newest first."""
    try:
        page = _api().list_jobs(status, limit)
    except ApiError as error:
        _fail(str(error))
    table = Table("id", "status", "created", "task")
    for item in page["items"]:
        table.add_row(item["id"], item["status"], item["created_at"][:19], item["task"][:60])
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    timeline: Annotated[
        Path | None, typer.Option(help="Also save the job's timeline (a Gantt chart) as SVG here.")
    ] = None,
) -> None:
    """Show a job: status, sub-agents, synthesis and metrics."""
    try:
        api = _api()
        print_job(api.get_job(job_id), console)
        if timeline is not None:
            timeline.write_bytes(api.timeline_svg(job_id))
            console.print(f"Timeline saved to {timeline}")
    except ApiError as error:
        _fail(str(error))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a running job; its sub-agents are stopped."""
    try:
        job = _api().cancel_job(job_id)
    except ApiError as error:
        _fail(str(error))
    console.print(f"Cancel requested for {job['id']} (status now {job['status']}).")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key's jobs belong to.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
    callback_url: Annotated[str | None, typer.Option(help="Default callback URL for the key's jobs.")] = None,
    callback_allow: Annotated[
        list[str] | None,
        typer.Option(
            help="A host, host:port or network this key's callbacks may reach although not public (repeatable)."
        ),
    ] = None,
) -> None:
    """Issue a key; it and its webhook secret are shown once (only a hash of the key is stored)."""
    from swarmkeep.store.engine import run_once, session_scope
    from swarmkeep.store.keys import create_key

    settings = get_settings()

    async def issue() -> tuple[int, str, str]:
        async with session_scope(settings.effective_database_url) as session:
            issued = await create_key(
                session, tenant=tenant, name=name, callback_url=callback_url, callback_allow=callback_allow
            )
            return issued.row.id, issued.key, issued.webhook_secret

    key_id, key, secret = run_once(issue())
    console.print(f"key id {key_id} for tenant {tenant!r}")
    console.print(f"API key:        {key}")
    console.print(f"webhook secret: {secret}")
    console.print("[yellow]Store both now: the key cannot be shown again.[/]")


@keys_app.command("list")
def keys_list() -> None:
    """List keys (prefixes only)."""
    from swarmkeep.store.engine import run_once, session_scope
    from swarmkeep.store.keys import list_keys

    settings = get_settings()

    async def rows() -> list[tuple[str, ...]]:
        async with session_scope(settings.effective_database_url) as session:
            return [
                (str(k.id), k.tenant, k.name, k.prefix + "…", k.callback_url or "", "revoked" if k.revoked_at else "")
                for k in await list_keys(session)
            ]

    table = Table("id", "tenant", "name", "key", "callback URL", "state")
    for row in run_once(rows()):
        table.add_row(*row)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: int) -> None:
    """Revoke a key: it stops working at once."""
    from swarmkeep.store.engine import run_once, session_scope
    from swarmkeep.store.keys import revoke_key

    settings = get_settings()

    async def revoke() -> bool:
        async with session_scope(settings.effective_database_url) as session:
            return await revoke_key(session, key_id) is not None

    if not run_once(revoke()):
        _fail(f"no key with id {key_id}")
    console.print(f"key {key_id} revoked")
