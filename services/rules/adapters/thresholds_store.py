"""SQL adapter for per-patient thresholds: the table is the truth, the outbox tells the others."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.rules.adapters.tables import outbox, patient_thresholds
from shared.events import ThresholdsChanged
from shared.ids import derive_id
from shared.outbox import enqueue
from shared.topics import THRESHOLDS


@dataclass(frozen=True)
class StoredThresholds:
    """One patient's bands as stored."""

    patient_id: str
    tenant_id: str
    version: int
    bands: dict[str, Any]
    updated_at: datetime
    updated_by: str


def _row(m: Any) -> StoredThresholds:
    return StoredThresholds(
        m["patient_id"],
        m["tenant_id"],
        m["version"],
        json.loads(m["thresholds"]),
        m["updated_at"],
        m["updated_by"],
    )


class SqlThresholdsStore:
    """Read and change thresholds; each change enqueues its thresholds.v1 event atomically."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def all(self) -> list[StoredThresholds]:
        """Every patient's thresholds (loaded at startup)."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(patient_thresholds))
        return [_row(r._mapping) for r in rows]

    async def get(self, patient_id: str) -> StoredThresholds | None:
        """One patient's thresholds."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(patient_thresholds).where(patient_thresholds.c.patient_id == patient_id)
                )
            ).first()
        return None if row is None else _row(row._mapping)

    async def put(
        self, *, patient_id: str, tenant_id: str, bands: dict[str, Any], by: str, at: datetime
    ) -> StoredThresholds:
        """Insert or replace; the version increases by one."""
        async with self._engine.begin() as conn:
            current = (
                await conn.execute(
                    select(patient_thresholds.c.version).where(
                        patient_thresholds.c.patient_id == patient_id
                    )
                )
            ).scalar()
            version = (current or 0) + 1
            values = {
                "tenant_id": tenant_id,
                "thresholds": json.dumps(bands),
                "version": version,
                "updated_at": at,
                "updated_by": by,
            }
            if current is None:
                await conn.execute(
                    insert(patient_thresholds).values(patient_id=patient_id, **values)
                )
            else:
                await conn.execute(
                    update(patient_thresholds)
                    .where(patient_thresholds.c.patient_id == patient_id)
                    .values(**values)
                )
            await enqueue(
                conn, outbox, THRESHOLDS, [_event(patient_id, tenant_id, version, bands, at)], at
            )
        return StoredThresholds(patient_id, tenant_id, version, bands, at, by)

    async def delete(self, *, patient_id: str, tenant_id: str, at: datetime) -> int | None:
        """Remove; return the version of the removal event, or None when there was nothing."""
        async with self._engine.begin() as conn:
            current = (
                await conn.execute(
                    select(patient_thresholds.c.version).where(
                        patient_thresholds.c.patient_id == patient_id
                    )
                )
            ).scalar()
            if current is None:
                return None
            await conn.execute(
                delete(patient_thresholds).where(patient_thresholds.c.patient_id == patient_id)
            )
            version = int(current) + 1
            await enqueue(
                conn, outbox, THRESHOLDS, [_event(patient_id, tenant_id, version, None, at)], at
            )
        return version


def _event(
    patient_id: str, tenant_id: str, version: int, bands: dict[str, Any] | None, at: datetime
) -> ThresholdsChanged:
    return ThresholdsChanged(
        event_id=derive_id("thresholds-changed", patient_id, str(version)),
        patient_id=patient_id,
        tenant_id=tenant_id,
        version=version,
        thresholds=None if bands is None else {"bands": bands},
        changed_at=at,
    )
