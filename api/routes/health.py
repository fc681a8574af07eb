"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from swarmkeep.store.migrate import require_migrated

router = APIRouter(tags=["health"])


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
        problems["database"] = str(error)
    try:
        client = await request.app.state.temporal()
        await client.service_client.check_health()
    except Exception as error:
        problems["temporal"] = f"not reachable at {settings.effective_temporal_address}: {error}"
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})
