"""`deliver_callback`: one signed Standard Webhooks POST to the job's callback URL, each attempt recorded.

A receiver is a stranger: the whole exchange (connect, send, answer) runs under one deadline, and only the first
`ANSWER_BYTES` of its answer are read, uncompressed, so an endless or slow body cannot hold or grow the worker.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from temporalio import activity
from temporalio.exceptions import ApplicationError

from swarmkeep.api.views import job_view, subtask_view
from swarmkeep.messages import CallbackInput
from swarmkeep.netguard import UnsafeURLError, resolve_safe
from swarmkeep.settings import Settings
from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import ApiKey, CallbackDelivery, Job, Subtask

# Enough of a receiver's answer to show why it refused; the rest is never read.
ANSWER_BYTES = 4096


async def read_answer(response: httpx.Response, limit: int = ANSWER_BYTES) -> bytes:
    """At most `limit` bytes of a streamed answer, as sent (the request asks for no compression)."""
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    return bytes(body)


class CallbackActivities:
    """Signs with the job's key's `whsec_` secret and sends only to addresses the SSRF guard accepts."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.database_url = settings.effective_database_url

    async def _payload(self, message: CallbackInput) -> tuple[str, str, str, list[str]]:
        """The URL, the signing secret, the JSON body of a message, and where its key's callbacks may go."""
        async with session_scope(self.database_url) as session:
            job = await session.get(Job, message.job_id)
            if job is None:
                raise ApplicationError(f"job {message.job_id} is not in the job store", non_retryable=True)
            key = await session.get(ApiKey, job.api_key_id) if job.api_key_id else None
            url = job.callback_url or (key.callback_url if key else None)
            if not url or key is None:
                raise ApplicationError(f"job {job.id} has no callback URL", type="NoCallbackURL", non_retryable=True)
            data: dict[str, Any]
            if message.subtask_id is not None:
                row = await session.scalar(
                    select(Subtask).where(Subtask.job_id == job.id, Subtask.subtask_id == message.subtask_id)
                )
                data = {"job_id": job.id, "subtask": subtask_view(row).model_dump(mode="json") if row else None}
                stamp = row.finished_at if row and row.finished_at else job.updated_at
            else:
                data = (await job_view(session, None, job, self.settings)).model_dump(mode="json")
                stamp = job.finished_at or job.updated_at
            body = {"type": message.event_type, "timestamp": stamp.isoformat(), "data": data}
            allow = [*self.settings.callback_allow, *(key.callback_allow or [])]
            return url, key.webhook_secret, json.dumps(body, separators=(",", ":")), allow

    async def _record(self, message: CallbackInput, url: str, status: int | None, error: str | None) -> None:
        async with session_scope(self.database_url) as session:
            session.add(
                CallbackDelivery(
                    job_id=message.job_id,
                    webhook_id=message.webhook_id,
                    event_type=message.event_type,
                    attempt=activity.info().attempt,
                    url=url,
                    status_code=status,
                    error=error,
                    delivered=status is not None and 200 <= status < 300,
                )
            )

    @activity.defn(name="deliver_callback")
    async def deliver_callback(self, message: CallbackInput) -> int:
        """POST the message; a non-2xx answer or a network error fails the attempt so Temporal retries it."""
        url, secret, body, allow = await self._payload(message)
        try:
            target = await resolve_safe(url, allow, self.settings.outbound_ports)
        except UnsafeURLError as error:
            await self._record(message, url, None, str(error))
            raise ApplicationError(str(error), type="UnsafeCallbackURL", non_retryable=True) from error
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "user-agent": "swarmkeep-webhooks/0.1",
            "host": target.host_header,
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(message.webhook_id, now, body),
        }
        extensions = {"sni_hostname": target.host} if url.startswith("https") else {}
        deadline = self.settings.callback_timeout_s
        try:
            # Sent to the checked address itself: no second DNS lookup, no redirects followed.
            async with asyncio.timeout(deadline), httpx.AsyncClient(timeout=deadline, follow_redirects=False) as http:
                request = http.build_request(
                    "POST", target.pinned_url, content=body, headers=headers, extensions=extensions
                )
                response = await http.send(request, stream=True)
                try:
                    # A 2xx says it all; a refusal's first bytes say why.
                    answer = b"" if response.is_success else await read_answer(response)
                finally:
                    await response.aclose()
        except TimeoutError as error:
            reason = f"no complete answer within {deadline:g} s (SWARMKEEP_CALLBACK_TIMEOUT_S)"
            await self._record(message, url, None, reason)
            raise ApplicationError(f"callback to {url} failed: {reason}", type="CallbackTimeout") from error
        except httpx.HTTPError as error:
            await self._record(message, url, None, f"{type(error).__name__}: {error}")
            raise ApplicationError(f"callback to {url} failed: {error}", type="CallbackUnreachable") from error
        ok = 200 <= response.status_code < 300
        excerpt = answer[:500].decode(response.charset_encoding or "utf-8", errors="replace")
        await self._record(message, url, response.status_code, None if ok else excerpt)
        if not ok:
            raise ApplicationError(
                f"callback to {url} answered {response.status_code}", type=f"CallbackHttp{response.status_code}"
            )
        return response.status_code
