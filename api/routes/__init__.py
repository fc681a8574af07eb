"""All routers of the HTTP API, gathered in one place."""

from fastapi import APIRouter

from swarmkeep.api.routes import health, jobs, metrics, waiting

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(metrics.router)
api_router.include_router(jobs.router)
api_router.include_router(waiting.router)
