#!/usr/bin/env python3
"""Container health checks for the swarmkeep image (installed as `swarmkeep-healthcheck`).

    swarmkeep-healthcheck http URL   healthy when URL answers 2xx (the API's /readyz)
    swarmkeep-healthcheck worker     healthy when a worker in this container polls the task queue

A worker has no port to probe, so its check asks Temporal who polls the task queue: the SDK names each poller
`<pid>@<hostname>`, and the hostname is this container's. A worker that hangs drops out of that list within
minutes; one that dies ends its container. Exit 0 when healthy, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import urllib.error
import urllib.request
from datetime import timedelta


def check_http(url: str, timeout_s: float = 5.0) -> str | None:
    """None when `url` answers 2xx, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if 200 <= response.status < 300:
                return None
            return f"{url} answered {response.status}"
    except urllib.error.HTTPError as error:
        return f"{url} answered {error.code}: {error.read(500).decode(errors='replace')}"
    except OSError as error:
        return f"{url} not reachable: {error}"


async def check_worker(hostname: str | None = None) -> str | None:
    """None when a poller from this host is on the settings' task queue, else why not."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from swarmkeep.settings import get_settings
    from swarmkeep.temporal_client import connect

    settings = get_settings()
    host = hostname or socket.gethostname()
    try:
        client = await connect(settings)
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=5),
        )
    except Exception as error:
        return f"Temporal at {settings.effective_temporal_address} not reachable: {error}"
    if any(poller.identity.endswith(f"@{host}") for poller in response.pollers):
        return None
    others = ", ".join(poller.identity for poller in response.pollers) or "none"
    return f"no worker on host {host} polls task queue {settings.task_queue!r} (pollers: {others})"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        problem = check_http(argv[1])
    elif argv == ["worker"]:
        problem = asyncio.run(check_worker())
    else:
        print("usage: swarmkeep-healthcheck http URL | worker", file=sys.stderr)
        return 2
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown: the Temporal client's native threads can crash it (SIGSEGV after the
    # answer was printed, temporalio/sdk-python#300), and a health check must exit with the code it decided.
    os._exit(code)
