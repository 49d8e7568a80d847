"""Audit records of what a validated caller did (who, client, tenant, token id, request id)."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog

from shared.audit import AuditActor, AuditRecorded, Outcome
from shared.auth.tokens import Principal


def actor_of(principal: Principal | None) -> AuditActor:
    """The validated caller as an audit actor, or anonymous when there is none."""
    if principal is None:
        return AuditActor(type="anonymous", id="anonymous")
    return AuditActor(
        type="service" if principal.sub == principal.client_id else "user",
        id=principal.sub,
        client_id=principal.client_id,
        tenant_id=principal.tenant_id,
        jti=principal.jti,
    )


def caller_record(
    principal: Principal,
    *,
    service: str,
    action: str,
    at: datetime,
    outcome: Outcome = "success",
    patient_id: str | None = None,
    tenant_id: str | None = None,
    purpose: str | None = None,
    legal_basis: str | None = None,
    reason: str | None = None,
    details: dict[str, str] | None = None,
    event_id: str | None = None,
) -> AuditRecorded:
    """Build the audit record of an action by `principal` (request id from the log context)."""
    return AuditRecorded(
        event_id=event_id or str(uuid.uuid4()),
        occurred_at=at,
        service=service,
        actor=actor_of(principal),
        action=action,
        patient_id=patient_id,
        tenant_id=tenant_id or principal.tenant_id,
        purpose=purpose,
        legal_basis=legal_basis,
        outcome=outcome,
        reason=reason,
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
        details=details or {},
    )
