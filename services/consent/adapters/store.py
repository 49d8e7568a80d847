"""SQL adapter of the consent store: consents, patient ownership, outbox, in one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.consent.adapters.tables import (
    consents,
    erasure_progress,
    erasure_requests,
    outbox,
    patients,
)
from services.consent.domain import ConsentRecord, Evidence, LegalBasis, PerformerType
from shared.events import Event, Purpose
from shared.outbox import enqueue
from shared.topics import Topic


def _row_to_record(row: Any) -> ConsentRecord:
    m = row._mapping
    return ConsentRecord(
        consent_id=m["consent_id"],
        tenant_id=m["tenant_id"],
        patient_id=m["patient_id"],
        purpose=Purpose(m["purpose"]),
        status=m["status"],
        legal_basis=LegalBasis(m["legal_basis"]),
        notice_version=m["notice_version"],
        performer_type=PerformerType(m["performer_type"]),
        performer_reference=m["performer_reference"],
        evidence=Evidence(m["evidence_type"], m["evidence_reference"], m["evidence_sha256"]),
        period_start=m["period_start"],
        period_end=m["period_end"],
        granted_at=m["granted_at"],
        granted_by=m["granted_by"],
        granted_client_id=m["granted_client_id"],
        revoked_at=m["revoked_at"],
        revoked_by=m["revoked_by"],
        revocation_reason=m["revocation_reason"],
    )


def _record_to_row(r: ConsentRecord) -> dict[str, Any]:
    return {
        "consent_id": r.consent_id,
        "tenant_id": r.tenant_id,
        "patient_id": r.patient_id,
        "purpose": r.purpose.value,
        "status": r.status,
        "legal_basis": r.legal_basis.value,
        "notice_version": r.notice_version,
        "performer_type": r.performer_type.value,
        "performer_reference": r.performer_reference,
        "evidence_type": r.evidence.type,
        "evidence_reference": r.evidence.reference,
        "evidence_sha256": r.evidence.sha256,
        "period_start": r.period_start,
        "period_end": r.period_end,
        "granted_at": r.granted_at,
        "granted_by": r.granted_by,
        "granted_client_id": r.granted_client_id,
        "revoked_at": r.revoked_at,
        "revoked_by": r.revoked_by,
        "revocation_reason": r.revocation_reason,
    }


class ConsentTransaction:
    """Operations inside one database transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def owner_of(self, patient_id: str) -> str | None:
        """Return the tenant that owns the patient, or None for an unknown patient."""
        row = (
            await self.conn.execute(
                select(patients.c.tenant_id).where(patients.c.patient_id == patient_id)
            )
        ).first()
        return None if row is None else str(row[0])

    async def claim_patient(self, patient_id: str, tenant_id: str, at: datetime) -> None:
        """Record the patient as the tenant's (first grant)."""
        await self.conn.execute(
            insert(patients).values(patient_id=patient_id, tenant_id=tenant_id, created_at=at)
        )

    async def insert_consent(self, record: ConsentRecord) -> None:
        """Store a new consent."""
        await self.conn.execute(insert(consents).values(**_record_to_row(record)))

    async def save_revocation(self, record: ConsentRecord) -> None:
        """Persist a revocation (only active → inactive ever happens)."""
        await self.conn.execute(
            update(consents)
            .where(consents.c.consent_id == record.consent_id, consents.c.status == "active")
            .values(
                status=record.status,
                revoked_at=record.revoked_at,
                revoked_by=record.revoked_by,
                revocation_reason=record.revocation_reason,
            )
        )

    async def consents_of(self, patient_id: str, tenant_id: str) -> list[ConsentRecord]:
        """Every consent of the patient within the tenant, oldest first."""
        rows = await self.conn.execute(
            select(consents)
            .where(consents.c.patient_id == patient_id, consents.c.tenant_id == tenant_id)
            .order_by(consents.c.granted_at, consents.c.consent_id)
        )
        return [_row_to_record(r) for r in rows]

    async def enqueue(self, topic: Topic[Any], events: Sequence[Event], at: datetime) -> None:
        """Add events to the outbox; the relay publishes them after commit."""
        await enqueue(self.conn, outbox, topic, events, at)


class SqlConsentStore:
    """Opens transactions on the consent database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writer = asyncio.Lock()  # SQLite allows one writer; PostgreSQL gets a lock below

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ConsentTransaction]:
        """Run the block in one transaction: all of it commits, or none."""
        async with self._writer, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # One writer at a time for the audit chain and patient claims (cheap at our rates).
                await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
            yield ConsentTransaction(conn)


class ErasureRecords:
    """Erasure requests and per-service completion rows (used inside ConsentTransaction)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add_request(
        self, *, request_id: str, tenant_id: str, patient_id: str, at: datetime, by: str
    ) -> None:
        """Store a new erasure request."""
        await self.conn.execute(
            insert(erasure_requests).values(
                request_id=request_id,
                tenant_id=tenant_id,
                patient_id=patient_id,
                requested_at=at,
                requested_by=by,
            )
        )

    async def request(self, request_id: str) -> dict[str, Any] | None:
        """One request with its completion rows, or None."""
        row = (
            await self.conn.execute(
                select(erasure_requests).where(erasure_requests.c.request_id == request_id)
            )
        ).first()
        if row is None:
            return None
        done = await self.conn.execute(
            select(erasure_progress).where(erasure_progress.c.request_id == request_id)
        )
        return {**row._mapping, "completed": {r.service: dict(r._mapping) for r in done}}

    async def mark_done(self, *, request_id: str, service: str, at: datetime, detail: str) -> None:
        """Record a service's completion once (a redelivered event changes nothing)."""
        exists = await self.conn.execute(
            select(erasure_progress.c.service).where(
                erasure_progress.c.request_id == request_id, erasure_progress.c.service == service
            )
        )
        if exists.first() is None and await self.request(request_id) is not None:
            await self.conn.execute(
                insert(erasure_progress).values(
                    request_id=request_id, service=service, completed_at=at, detail=detail[:500]
                )
            )
