"""Dependencies of the routes, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from swarmkeep.settings import Settings
from swarmkeep.store.engine import session_factory
from swarmkeep.store.keys import find_key
from swarmkeep.store.models import ApiKey


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with session_factory(request.app.state.settings.effective_database_url)() as session:
        yield session


async def get_temporal(request: Request) -> Client:
    return await request.app.state.temporal()  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]


async def get_current_key(
    session: SessionDep,
    authorization: Annotated[str | None, Header(description="`Bearer <key>`")] = None,
    x_api_key: Annotated[str | None, Header(description="The key, as an alternative to Authorization")] = None,
) -> ApiKey:
    """The caller's key, from `Authorization: Bearer <key>` or `X-API-Key`; 401 when missing or wrong."""
    presented = x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            presented = value.strip()
    if not presented:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "An API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>` "
            "(create one with `swarmkeep keys create`).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = await find_key(session, presented)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "That API key is not valid (unknown or revoked).",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    return key


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]
