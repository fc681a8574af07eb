"""All routers of the HTTP API, gathered in one place."""

from fastapi import APIRouter

from swarmkeep.api.routes import artifacts, health, jobs, metrics, tasks, timeline, waiting

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(metrics.router)
api_router.include_router(jobs.router)
api_router.include_router(waiting.router)
api_router.include_router(timeline.router)
api_router.include_router(artifacts.router)
api_router.include_router(tasks.router)
