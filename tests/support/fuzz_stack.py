"""A real stack for fuzzing the API: Temporal dev server, scripted model, an in-process worker and the API.

Run `python -m tests.support.fuzz_stack FOLDER`; it prints `URL KEY` on one line once the API answers, and runs
until interrupted (SIGINT or SIGTERM), then stops everything it started.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from pathlib import Path

from temporalio.client import Client

from swarmkeep.services.process import free_port
from swarmkeep.services.temporal_dev import TemporalDevServer
from swarmkeep.settings import Settings
from swarmkeep.store.engine import dispose_engines, session_scope
from swarmkeep.store.keys import create_key
from swarmkeep.store.migrate import upgrade
from swarmkeep.worker import build_worker
from tests.support.api_server import ApiServer
from tests.support.scripted_llm import ScriptedLLM


async def serve(folder: Path, stop: asyncio.Event) -> None:
    """Start the stack in `folder`, print its URL and key, and wait for `stop`."""
    folder.mkdir(parents=True, exist_ok=True)
    temporal = TemporalDevServer(folder / "temporal.db", port=free_port(), ui=False, log_file=folder / "temporal.log")
    temporal.start_and_wait()
    llm = ScriptedLLM()
    llm.start()
    try:
        settings = Settings(
            data_dir=folder,
            temporal_address=temporal.address,
            task_queue=f"fuzz-{uuid.uuid4().hex[:10]}",
            llm_base_url=llm.base_url,
            llm_model="scripted",
            llm_timeout_s=10.0,
            api_port=free_port(),
            heartbeat_timeout_s=5.0,
            subagent_timeout_s=30.0,
            min_subtasks=1,
            # Human subtasks go to an agent after this, so every job ends and no long poll waits its full timeout.
            human_deadline_s=5.0,
        )
        await upgrade(settings.effective_database_url)
        client = await Client.connect(temporal.address)
        async with build_worker(client, settings):
            api = ApiServer(settings)
            api.start()
            try:
                async with session_scope(settings.effective_database_url) as session:
                    key = await create_key(session, tenant="fuzz", name="fuzz")
                print(api.url, key.key, flush=True)
                await stop.wait()
            finally:
                api.stop()
        await dispose_engines()
    finally:
        llm.stop()
        temporal.stop()


def main() -> None:
    folder = Path(sys.argv[1])

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(folder, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
