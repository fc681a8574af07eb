"""The FastAPI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from temporalio.client import Client

from swarmkeep.api.body_limit import BodyLimitMiddleware
from swarmkeep.api.routes import api_router
from swarmkeep.search_attributes import register as register_search_attributes
from swarmkeep.settings import Settings, get_settings
from swarmkeep.store.engine import dispose_engines
from swarmkeep.store.migrate import require_migrated
from swarmkeep.temporal_client import connect


class TemporalConnection:
    """Connect to Temporal on first use, so the API starts (and answers /healthz) before Temporal is up."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self.search_attributes = False  # registered in the namespace, so jobs may carry them

    async def __call__(self) -> Client:
        async with self._lock:
            if self._client is None:
                client = await connect(self.settings)
                self.search_attributes = await register_search_attributes(client, self.settings.temporal_namespace)
                self._client = client
            return self._client


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    """HTTP errors as the OpenAPI document says them: a 422's `detail` is a list of problems (a body FastAPI cannot
    even parse, its 400, is one too), a 405 names every method the path has (Starlette's names only the first
    route's)."""
    if error.status_code in (400, 422) and isinstance(error.detail, str):
        problem = {"loc": ["body"] if error.status_code == 400 else [], "msg": error.detail, "type": "value_error"}
        return JSONResponse({"detail": [problem]}, status_code=422, headers=error.headers)
    if error.status_code == 405:
        allowed = sorted(
            {
                method
                for route in request.app.router.routes
                if route.matches(request.scope)[0] != Match.NONE
                for method in getattr(route, "methods", None) or ()
            }
        )
        return JSONResponse({"detail": error.detail}, status_code=405, headers={"Allow": ", ".join(allowed)})
    return await http_exception_handler(request, error)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app; refuses to start on an un-migrated job store."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await require_migrated(settings.effective_database_url)
        yield
        await dispose_engines()

    app = FastAPI(
        title="swarmkeep",
        version="0.1.0",
        summary="Post a task; an orchestrator LLM splits it among durable sub-agents and synthesises the result.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.temporal = TemporalConnection(settings)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.include_router(api_router)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    return app
