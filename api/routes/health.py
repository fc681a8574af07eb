"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from swarmkeep.settings import redact_url
from swarmkeep.store.migrate import require_migrated

router = APIRouter(tags=["health"])


def without_password(message: str, url: str) -> str:
    """An error message with the database URL, and its password wherever else it appears, masked."""
    message = message.replace(url, redact_url(url))
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        return message
    return message.replace(str(password), "***") if password else message


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The job store is migrated and Temporal answers; 503 with the reasons otherwise."""
    settings = request.app.state.settings
    problems: dict[str, str] = {}
    try:
        await require_migrated(settings.effective_database_url)
    except Exception as error:
        problems["database"] = without_password(str(error), settings.effective_database_url)
    try:
        client = await request.app.state.temporal()
        await client.service_client.check_health()
    except Exception as error:
        problems["temporal"] = f"not reachable at {settings.effective_temporal_address}: {error}"
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})
