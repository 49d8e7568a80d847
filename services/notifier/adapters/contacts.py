"""Patients' contact preferences and the addresses providers declared dead."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.adapters.tables import contacts, disabled_addresses
from services.notifier.domain import ContactPreferences
from services.notifier.ports import Channel


@dataclass(frozen=True)
class StoredContact:
    """A patient's preferences and who last set them."""

    patient_id: str
    tenant_id: str
    prefs: ContactPreferences
    updated_at: datetime
    updated_by: str


def address_hash(channel: Channel, address: str) -> str:
    """Return the key of a (channel, address) pair: a hash, so the table holds no address."""
    return hashlib.sha256(f"{channel.value}\x1f{address}".encode()).hexdigest()


class DisabledAddresses:
    """The dead (channel, address) pairs among some candidates; a Collection for plan_targets."""

    def __init__(self, hashes: set[str]) -> None:
        self._hashes = hashes

    def __contains__(self, pair: object) -> bool:
        if not isinstance(pair, tuple) or len(pair) != 2:
            return False
        return address_hash(Channel(pair[0]), str(pair[1])) in self._hashes

    def __iter__(self) -> Iterator[tuple[Channel, str]]:
        return iter(())  # only membership is needed; hashes cannot be turned back into addresses

    def __len__(self) -> int:
        return len(self._hashes)


async def get_contact(conn: AsyncConnection, patient_id: str) -> StoredContact | None:
    """A patient's stored preferences, if any."""
    row = (await conn.execute(select(contacts).where(contacts.c.patient_id == patient_id))).first()
    return None if row is None else _stored(row)


async def get_contacts(
    conn: AsyncConnection, patient_ids: set[str]
) -> dict[str, StoredContact | None]:
    """Several patients' preferences at once (None for a patient with none)."""
    if not patient_ids:
        return {}
    rows = await conn.execute(select(contacts).where(contacts.c.patient_id.in_(patient_ids)))
    found = {r.patient_id: _stored(r) for r in rows}
    return {p: found.get(p) for p in patient_ids}


def _stored(row: Any) -> StoredContact:
    return StoredContact(
        patient_id=row.patient_id,
        tenant_id=row.tenant_id,
        prefs=ContactPreferences.model_validate_json(row.prefs),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


async def put_contact(conn: AsyncConnection, contact: StoredContact) -> None:
    """Insert or replace a patient's preferences."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    values: dict[str, Any] = {
        "patient_id": contact.patient_id,
        "tenant_id": contact.tenant_id,
        "prefs": contact.prefs.model_dump_json(),
        "updated_at": contact.updated_at,
        "updated_by": contact.updated_by,
    }
    stmt = insert(contacts).values(values)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[contacts.c.patient_id],
            set_={k: stmt.excluded[k] for k in values if k != "patient_id"},
        )
    )


async def delete_contact(conn: AsyncConnection, patient_id: str) -> int:
    """Delete a patient's preferences and dead addresses (erasure); return rows deleted."""
    gone = await conn.execute(delete(contacts).where(contacts.c.patient_id == patient_id))
    dead = await conn.execute(
        delete(disabled_addresses).where(disabled_addresses.c.patient_id == patient_id)
    )
    return int(gone.rowcount or 0) + int(dead.rowcount or 0)


async def disabled_among(
    conn: AsyncConnection, pairs: Iterable[tuple[Channel, str]]
) -> DisabledAddresses:
    """Which of these (channel, address) pairs are dead."""
    hashes = {address_hash(c, a) for c, a in pairs}
    if not hashes:
        return DisabledAddresses(set())
    rows = await conn.execute(
        select(disabled_addresses.c.address_hash).where(
            disabled_addresses.c.address_hash.in_(hashes)
        )
    )
    return DisabledAddresses({r.address_hash for r in rows})


async def disable_address(
    conn: AsyncConnection,
    *,
    channel: Channel,
    address: str,
    patient_id: str | None,
    code: str,
    at: datetime,
) -> None:
    """Remember that an address is dead (idempotent)."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(disabled_addresses).values(
        address_hash=address_hash(channel, address),
        channel=channel.value,
        patient_id=patient_id,
        code=code[:64] or "disabled",
        disabled_at=at,
    )
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=["address_hash"]))


async def is_disabled(conn: AsyncConnection, channel: Channel, address: str) -> bool:
    """Whether one address is dead."""
    found = await conn.execute(
        select(disabled_addresses.c.address_hash).where(
            disabled_addresses.c.address_hash == address_hash(channel, address)
        )
    )
    return found.first() is not None
