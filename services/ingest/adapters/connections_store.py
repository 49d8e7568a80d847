"""SQL store of vendor connections (SQLite or PostgreSQL through SQLAlchemy Core)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.adapters.tables import connections as t
from services.ingest.adapters.tables import deferred_pulls as deferred
from services.ingest.adapters.token_cipher import TokenCipher
from services.ingest.connections import (
    Connection,
    ConnectionStatus,
    Vendor,
    device_key,
    hash_secret,
    secret_matches,
    split_device_key,
)
from services.ingest.errors import ConnectionExistsError, TokenStorageUnavailableError


@dataclass(frozen=True)
class NewConnection:
    """What an admin submits to link a vendor account to a patient."""

    vendor: Vendor
    vendor_user: str | None  # None for Apple: the store issues a device key
    patient_id: str
    tenant_id: str
    created_by: str
    tokens: dict[str, str] | None = None
    utc_offset_minutes: int | None = None


def _row_to_connection(row: Any) -> Connection:
    return Connection(
        connection_id=row.connection_id,
        vendor=Vendor(row.vendor),
        vendor_user=row.vendor_user,
        patient_id=row.patient_id,
        tenant_id=row.tenant_id,
        status=ConnectionStatus(row.status),
        status_reason=row.status_reason,
        utc_offset_minutes=row.utc_offset_minutes,
        has_tokens=row.tokens_encrypted is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by,
    )


class SqlConnectionStore:
    """Connections, encrypted vendor tokens and hashed device keys."""

    def __init__(self, engine: AsyncEngine, cipher: TokenCipher | None) -> None:
        self._engine = engine
        self._cipher = cipher

    async def create(self, new: NewConnection, *, now: datetime) -> tuple[Connection, str | None]:
        """Store a link; returns it and, for Apple, the device key (shown once, stored hashed)."""
        vendor_user, key, key_hash = new.vendor_user, None, None
        if new.vendor is Vendor.APPLE_HEALTH:
            vendor_user, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
            key, key_hash = device_key(vendor_user, secret), hash_secret(secret)
        encrypted = None
        if new.tokens is not None:
            if self._cipher is None:
                raise TokenStorageUnavailableError("no INGEST_TOKEN_KEYS configured")
            encrypted = self._cipher.encrypt(new.tokens)
        values = {
            "connection_id": str(uuid.uuid4()),
            "vendor": new.vendor.value,
            "vendor_user": vendor_user,
            "patient_id": new.patient_id,
            "tenant_id": new.tenant_id,
            "status": ConnectionStatus.ACTIVE.value,
            "status_reason": None,
            "utc_offset_minutes": new.utc_offset_minutes,
            "tokens_encrypted": encrypted,
            "device_key_hash": key_hash,
            "created_at": now,
            "updated_at": now,
            "created_by": new.created_by,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(t).values(**values))
        except IntegrityError as exc:
            raise ConnectionExistsError(f"{new.vendor.value} user already connected") from exc
        return _row_to_connection(SimpleNamespace(**values)), key

    async def get(self, connection_id: str) -> Connection | None:
        """Return one connection."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t).where(t.c.connection_id == connection_id))).first()
        return _row_to_connection(row) if row else None

    async def find(self, vendor: Vendor, vendor_user: str) -> Connection | None:
        """Return the connection of a vendor account."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t).where(t.c.vendor == vendor.value, t.c.vendor_user == vendor_user)
                )
            ).first()
        return _row_to_connection(row) if row else None

    async def find_many(self, vendor: Vendor, vendor_users: set[str]) -> dict[str, Connection]:
        """Return the connections of several vendor accounts, by vendor user."""
        if not vendor_users:
            return {}
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t).where(
                        t.c.vendor == vendor.value, t.c.vendor_user.in_(sorted(vendor_users))
                    )
                )
            ).all()
        return {r.vendor_user: _row_to_connection(r) for r in rows}

    async def authenticate_device(self, key: str) -> Connection | None:
        """Return the Apple connection a device key belongs to, or None (constant-time compare)."""
        parts = split_device_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t).where(
                        t.c.vendor == Vendor.APPLE_HEALTH.value, t.c.vendor_user == key_id
                    )
                )
            ).first()
        if row is None or not secret_matches(secret, row.device_key_hash):
            return None
        return _row_to_connection(row)

    async def list(
        self, *, tenant_id: str, patient_id: str | None = None, vendor: Vendor | None = None
    ) -> list[Connection]:
        """Return a tenant's connections, newest first, optionally filtered."""
        query = select(t).where(t.c.tenant_id == tenant_id)
        if patient_id is not None:
            query = query.where(t.c.patient_id == patient_id)
        if vendor is not None:
            query = query.where(t.c.vendor == vendor.value)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(t.c.created_at.desc()))).all()
        return [_row_to_connection(r) for r in rows]

    async def list_for_patient(self, patient_id: str) -> list[Connection]:
        """Return every connection of a patient (export)."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(t).where(t.c.patient_id == patient_id))).all()
        return [_row_to_connection(r) for r in rows]

    async def delete(self, connection_id: str) -> bool:
        """Delete a link and its tokens; return whether it existed."""
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(t).where(t.c.connection_id == connection_id))
        return bool(result.rowcount)

    async def delete_patient(self, patient_id: str) -> int:
        """Erasure: delete every link (and tokens) of a patient, and the pulls still deferred
        for those vendor accounts (they name the account, and a Garmin one its callback token),
        in one transaction; return how many links."""
        async with self._engine.begin() as conn:
            accounts = (
                await conn.execute(
                    select(t.c.vendor, t.c.vendor_user).where(t.c.patient_id == patient_id)
                )
            ).all()
            for vendor, vendor_user in accounts:
                await conn.execute(
                    delete(deferred).where(
                        deferred.c.vendor == vendor, deferred.c.vendor_user == vendor_user
                    )
                )
            result = await conn.execute(delete(t).where(t.c.patient_id == patient_id))
        return int(result.rowcount or 0)

    async def tokens_of(self, connection: Connection) -> dict[str, str] | None:
        """Decrypt the vendor tokens of a connection."""
        async with self._engine.connect() as conn:
            value = (
                await conn.execute(
                    select(t.c.tokens_encrypted).where(
                        t.c.connection_id == connection.connection_id
                    )
                )
            ).scalar()
        if value is None or self._cipher is None:
            return None
        return self._cipher.decrypt(value)

    async def save_tokens(self, vendor: Vendor, vendor_user: str, tokens: dict[str, str]) -> None:
        """Replace the token pair of a vendor account (refresh tokens are single-use)."""
        if self._cipher is None:
            raise TokenStorageUnavailableError("no INGEST_TOKEN_KEYS configured")
        async with self._engine.begin() as conn:
            await conn.execute(
                update(t)
                .where(t.c.vendor == vendor.value, t.c.vendor_user == vendor_user)
                .values(tokens_encrypted=self._cipher.encrypt(tokens), updated_at=datetime.now(UTC))
            )

    async def exchange_tokens(
        self,
        vendor: Vendor,
        vendor_user: str,
        exchange: Callable[[dict[str, str] | None], Awaitable[dict[str, str]]],
    ) -> dict[str, str]:
        """Run `exchange` on the stored token pair while holding it exclusively, store what it
        returns, and return that. On PostgreSQL the row stays locked (SELECT ... FOR UPDATE) until
        the new pair is committed, so another replica refreshing the same user waits and then
        sees the new pair; SQLite has one writer and the caller's per-process lock suffices."""
        if self._cipher is None:
            raise TokenStorageUnavailableError("no INGEST_TOKEN_KEYS configured")
        where = (t.c.vendor == vendor.value, t.c.vendor_user == vendor_user)
        async with self._engine.begin() as conn:
            query = select(t.c.tokens_encrypted).where(*where)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            stored = (await conn.execute(query)).scalar()
            current = self._cipher.decrypt(stored) if stored is not None else None
            fresh = await exchange(current)
            if fresh != current:
                await conn.execute(
                    update(t)
                    .where(*where)
                    .values(
                        tokens_encrypted=self._cipher.encrypt(fresh), updated_at=datetime.now(UTC)
                    )
                )
        return fresh

    async def set_status(
        self, vendor: Vendor, vendor_user: str, status: ConnectionStatus, reason: str
    ) -> None:
        """Mark a vendor account (e.g. needs_migration after a 410)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(t)
                .where(t.c.vendor == vendor.value, t.c.vendor_user == vendor_user)
                .values(status=status.value, status_reason=reason, updated_at=datetime.now(UTC))
            )

    async def reactivate(
        self, vendor: Vendor, vendor_user: str, *, revoked_for: str, reason: str
    ) -> bool:
        """Make a connection active again only if it was revoked for `revoked_for` (so a vendor's
        permissions change never undoes a deregistration, a needs_reauth or a needs_migration)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(t)
                .where(
                    t.c.vendor == vendor.value,
                    t.c.vendor_user == vendor_user,
                    t.c.status == ConnectionStatus.REVOKED.value,
                    t.c.status_reason == revoked_for,
                )
                .values(
                    status=ConnectionStatus.ACTIVE.value,
                    status_reason=reason,
                    updated_at=datetime.now(UTC),
                )
            )
        return bool(result.rowcount)
