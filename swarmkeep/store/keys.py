"""API keys: issue, list, revoke and check. Only a key's SHA-256 is stored; it is shown once, when issued."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarmkeep.store.models import ApiKey, utcnow

KEY_PREFIX = "sk_"
DEV_KEY_FILE = "dev-api-key"


@dataclass
class IssuedKey:
    """A new key: `key` and `webhook_secret` are shown to the caller once; the row keeps the hash."""

    row: ApiKey
    key: str

    @property
    def webhook_secret(self) -> str:
        return self.row.webhook_secret


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def create_key(
    session: AsyncSession,
    tenant: str,
    name: str,
    callback_url: str | None = None,
    key: str | None = None,
    callback_allow: list[str] | None = None,
) -> IssuedKey:
    """Issue a key for `tenant` (or register a given one, as for the development key); `callback_allow` opens
    non-public callback destinations for this key's jobs only (entries as in SWARMKEEP_CALLBACK_ALLOW)."""
    key = key or KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        tenant=tenant,
        name=name,
        prefix=key[:10],
        key_hash=hash_key(key),
        webhook_secret=new_webhook_secret(),
        callback_url=callback_url,
        callback_allow=list(callback_allow) if callback_allow else None,
    )
    session.add(row)
    await session.flush()
    return IssuedKey(row=row, key=key)


async def find_key(session: AsyncSession, key: str) -> ApiKey | None:
    """The live (not revoked) key row for a presented key, or None."""
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    return row if row is not None and row.revoked_at is None else None


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.id))).all())


async def revoke_key(session: AsyncSession, key_id: int) -> ApiKey | None:
    row = await session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


async def ensure_dev_key(session: AsyncSession, data_dir: Path) -> str:
    """The local development key: made once, kept in the data directory (mode 0600), registered if missing."""
    path = data_dir / DEV_KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
    else:
        key = KEY_PREFIX + "dev_" + secrets.token_urlsafe(24)
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(key + "\n")
    if await find_key(session, key) is None:
        await create_key(session, tenant="local", name="development", key=key)
    return key


def read_dev_key(data_dir: Path) -> str | None:
    path = data_dir / DEV_KEY_FILE
    return path.read_text().strip() if path.is_file() else None
