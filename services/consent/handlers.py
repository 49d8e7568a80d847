"""Consent commands and queries: each change, its consent.v1 event and its audit record commit together."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.consent.adapters.store import ConsentTransaction, SqlConsentStore
from services.consent.domain import (
    ConsentRecord,
    Evidence,
    LegalBasis,
    PerformerType,
    PeriodError,
    consent_changed,
    new_consent,
    purpose_active,
    revoke,
)
from services.consent.errors import ConsentNotFoundError, InvalidConsentError, PatientNotFoundError
from services.consent.ports import AuditLog, Notifier
from shared.audit import AuditRecorded, Outcome
from shared.auth import Principal, caller_record
from shared.events import Purpose
from shared.ids import derive_id
from shared.topics import CONSENT

SERVICE = "consent"


@dataclass(frozen=True)
class GrantCommand:
    """A clinician's or admin's recorded grant, with evidence."""

    patient_id: str
    purpose: Purpose
    legal_basis: LegalBasis
    notice_version: str
    performer_type: PerformerType
    performer_reference: str
    evidence: Evidence
    period_start: datetime | None
    period_end: datetime | None


@dataclass(frozen=True)
class Context:
    """Who asks, when, and the ports to use."""

    actor: Principal
    now: datetime
    store: SqlConsentStore
    audit: AuditLog
    outbox: Notifier


def audit_record(
    ctx: Context,
    *,
    action: str,
    patient_id: str,
    outcome: Outcome = "success",
    purpose: str | None = None,
    legal_basis: str | None = None,
    reason: str | None = None,
    event_id: str | None = None,
    details: dict[str, str] | None = None,
) -> AuditRecorded:
    """Build an audit record for an action of the caller."""
    return caller_record(
        ctx.actor,
        service=SERVICE,
        action=action,
        at=ctx.now,
        outcome=outcome,
        patient_id=patient_id,
        purpose=purpose,
        legal_basis=legal_basis,
        reason=reason,
        details=details,
        event_id=event_id,
    )


async def owns(tx: ConsentTransaction, ctx: Context, patient_id: str) -> bool:
    """Return True when the caller's tenant owns the patient; audit the refusal otherwise.

    Another tenant's patient and an unknown patient look the same to the caller (404).
    """
    if await tx.owner_of(patient_id) == ctx.actor.tenant_id:
        return True
    await ctx.audit.append(
        tx.conn,
        audit_record(
            ctx,
            action="authz.denied",
            patient_id=patient_id,
            outcome="denied",
            reason="patient_not_in_tenant",
        ),
    )
    return False


async def grant_consent(cmd: GrantCommand, ctx: Context) -> ConsentRecord:
    """Record a new active consent; claim the patient for the tenant on the first grant."""
    try:
        record = new_consent(
            consent_id=str(uuid.uuid4()),
            tenant_id=ctx.actor.tenant_id,
            patient_id=cmd.patient_id,
            purpose=cmd.purpose,
            legal_basis=cmd.legal_basis,
            notice_version=cmd.notice_version,
            performer_type=cmd.performer_type,
            performer_reference=cmd.performer_reference,
            evidence=cmd.evidence,
            period_start=cmd.period_start,
            period_end=cmd.period_end,
            granted_at=ctx.now,
            granted_by=ctx.actor.sub,
            granted_client_id=ctx.actor.client_id,
        )
    except PeriodError as exc:
        raise InvalidConsentError(str(exc)) from exc
    async with ctx.store.transaction() as tx:
        if await tx.owner_of(cmd.patient_id) is None:
            await tx.claim_patient(cmd.patient_id, ctx.actor.tenant_id, ctx.now)
        if not await owns(tx, ctx, cmd.patient_id):
            denied = True
        else:
            denied = False
            await _insert_grant(tx, ctx, cmd, record)
    if denied:
        raise PatientNotFoundError(cmd.patient_id)
    ctx.outbox.notify()
    return record


async def _insert_grant(
    tx: ConsentTransaction, ctx: Context, cmd: GrantCommand, record: ConsentRecord
) -> None:
    await tx.insert_consent(record)
    active = purpose_active(
        await tx.consents_of(cmd.patient_id, ctx.actor.tenant_id), cmd.purpose, ctx.now
    )
    await tx.enqueue(
        CONSENT, [consent_changed(record, change="granted", active=active, at=ctx.now)], ctx.now
    )
    await ctx.audit.append(
        tx.conn,
        audit_record(
            ctx,
            action="consent.grant",
            patient_id=cmd.patient_id,
            purpose=cmd.purpose.value,
            legal_basis=cmd.legal_basis.value,
            event_id=derive_id("audit", record.consent_id, "grant"),
            details={"consent_id": record.consent_id, "notice_version": cmd.notice_version},
        ),
    )


async def revoke_consent(
    patient_id: str, consent_id: str, reason: str, ctx: Context
) -> tuple[ConsentRecord, bool]:
    """Revoke (idempotent): commit, enqueue consent.v1 and audit together; return (record, changed)."""
    async with ctx.store.transaction() as tx:
        if not await owns(tx, ctx, patient_id):
            current = None
        else:
            records = await tx.consents_of(patient_id, ctx.actor.tenant_id)
            current = next((r for r in records if r.consent_id == consent_id), None)
        if current is not None:
            revoked, changed = await _apply_revocation(tx, ctx, records, current, reason)
    if current is None:
        raise ConsentNotFoundError(consent_id)
    if changed:
        ctx.outbox.notify()
    return revoked, changed


async def _apply_revocation(
    tx: ConsentTransaction,
    ctx: Context,
    records: list[ConsentRecord],
    current: ConsentRecord,
    reason: str,
) -> tuple[ConsentRecord, bool]:
    consent_id, patient_id = current.consent_id, current.patient_id
    revoked, changed = revoke(current, at=ctx.now, by=ctx.actor.sub, reason=reason)
    if changed:
        await tx.save_revocation(revoked)
        others = [revoked if r.consent_id == consent_id else r for r in records]
        active = purpose_active(others, revoked.purpose, ctx.now)
        await tx.enqueue(
            CONSENT,
            [consent_changed(revoked, change="revoked", active=active, at=ctx.now)],
            ctx.now,
        )
    await ctx.audit.append(
        tx.conn,
        audit_record(
            ctx,
            action="consent.revoke",
            patient_id=patient_id,
            purpose=current.purpose.value,
            legal_basis=current.legal_basis.value,
            reason=reason,
            details={"consent_id": consent_id, "changed": str(changed).lower()},
        ),
    )
    return revoked, changed


async def list_consents(patient_id: str, ctx: Context) -> list[ConsentRecord]:
    """Every consent of the patient (the read itself is audited)."""
    async with ctx.store.transaction() as tx:
        allowed = await owns(tx, ctx, patient_id)
        if allowed:
            records = await tx.consents_of(patient_id, ctx.actor.tenant_id)
            await ctx.audit.append(
                tx.conn, audit_record(ctx, action="consent.read", patient_id=patient_id)
            )
    if not allowed:
        raise PatientNotFoundError(patient_id)
    return records


async def consent_status(patient_id: str, purpose: Purpose, ctx: Context) -> bool:
    """Whether the purpose is allowed now for the patient (audited read)."""
    async with ctx.store.transaction() as tx:
        allowed = await owns(tx, ctx, patient_id)
        if allowed:
            records = await tx.consents_of(patient_id, ctx.actor.tenant_id)
            await ctx.audit.append(
                tx.conn,
                audit_record(
                    ctx, action="consent.status", patient_id=patient_id, purpose=purpose.value
                ),
            )
    if not allowed:
        raise PatientNotFoundError(patient_id)
    return purpose_active(records, purpose, ctx.now)
