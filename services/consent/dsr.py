"""Data-subject rights handled by the consent service: erasure fan-out and the cross-service export."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import structlog

from services.consent.adapters.store import ErasureRecords, SqlConsentStore
from services.consent.errors import PatientNotFoundError
from services.consent.handlers import Context, audit_record, owns
from shared.consumer import MessageContext
from shared.events import ErasureEvent
from shared.ids import derive_id
from shared.topics import ERASURE

log = structlog.get_logger(__name__)

# Kept on erasure, as the law requires: the consent records (proof of lawful processing, LGPD
# Art. 8 §2) and the audit trail (Art. 37, 6 X); both hold pseudonymous ids only.
RETAINED = "consent records and audit trail retained as legal evidence (LGPD art. 8 §2, 16 I, 37)"


async def request_erasure(patient_id: str, ctx: Context) -> str:
    """Record the request and publish it on erasure.v1 (outbox); return the request id."""
    request_id = str(uuid.uuid4())
    async with ctx.store.transaction() as tx:
        allowed = await owns(tx, ctx, patient_id)
        if allowed:
            await ErasureRecords(tx.conn).add_request(
                request_id=request_id,
                tenant_id=ctx.actor.tenant_id,
                patient_id=patient_id,
                at=ctx.now,
                by=ctx.actor.sub,
            )
            event = ErasureEvent(
                event_id=derive_id("erasure-requested", request_id),
                request_id=request_id,
                patient_id=patient_id,
                tenant_id=ctx.actor.tenant_id,
                kind="requested",
                occurred_at=ctx.now,
            )
            await tx.enqueue(ERASURE, [event], ctx.now)
            await ctx.audit.append(
                tx.conn,
                audit_record(
                    ctx,
                    action="dsr.erasure_requested",
                    patient_id=patient_id,
                    details={"request_id": request_id},
                ),
            )
    if not allowed:
        raise PatientNotFoundError(patient_id)
    ctx.outbox.notify()
    return request_id


async def erasure_status(patient_id: str, request_id: str, ctx: Context) -> dict[str, Any] | None:
    """The request and which services completed it; None when not the caller's."""
    async with ctx.store.transaction() as tx:
        if not await owns(tx, ctx, patient_id):
            return None
        found = await ErasureRecords(tx.conn).request(request_id)
    if found is None or found["patient_id"] != patient_id:
        return None
    return found


async def on_erasure_event(
    event: ErasureEvent,
    _: MessageContext,
    *,
    store: SqlConsentStore,
    publisher: Any,
    now: datetime,
) -> None:
    """Consent's own part of an erasure, and the ledger of every service's completion."""
    if event.kind == "requested":
        done = ErasureEvent(
            event_id=derive_id("erasure-completed", event.request_id, "consent"),
            request_id=event.request_id,
            patient_id=event.patient_id,
            tenant_id=event.tenant_id,
            kind="completed",
            service="consent",
            detail=RETAINED,
            occurred_at=now,
        )
        await publisher.publish(ERASURE, done)
        return
    async with store.transaction() as tx:
        await ErasureRecords(tx.conn).mark_done(
            request_id=event.request_id,
            service=event.service or "unknown",
            at=event.occurred_at,
            detail=event.detail,
        )


async def collect_export(
    patient_id: str, *, sources: dict[str, str], authorization: str, http: httpx.AsyncClient
) -> dict[str, Any]:
    """Ask every other service for its part, forwarding the caller's token."""
    parts: dict[str, Any] = {}
    for service, base_url in sources.items():
        url = f"{base_url.rstrip('/')}/v1/patients/{patient_id}/export"
        try:
            response = await http.get(url, headers={"Authorization": authorization})
        except httpx.HTTPError as exc:
            parts[service] = {"error": f"unreachable: {type(exc).__name__}"}
            continue
        if response.status_code == 200:
            parts[service] = response.json().get("data", {})
        else:
            parts[service] = {"error": f"HTTP {response.status_code}"}
    return parts
