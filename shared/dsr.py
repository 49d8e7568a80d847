"""Data-subject rights (LGPD Art. 18) shared by every service: the per-service export endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from shared.audit import AuditRecorded, AuditSink
from shared.auth import Principal, caller_record, require_scopes
from shared.consent_view import ConsentState
from shared.http import NotFoundError, PatientPath

Collector = Callable[[str], Awaitable[dict[str, Any]]]


def export_router(
    *, service: str, collect: Collector, consent: ConsentState, audit: AuditSink
) -> APIRouter:
    """GET /v1/patients/{patient_id}/export: what this service holds about the patient."""
    router = APIRouter(tags=["data-subject rights"])

    @router.get(
        "/v1/patients/{patient_id}/export",
        summary="Everything this service holds about the patient (scope patient:export)",
    )
    async def export(
        patient_id: PatientPath,
        request: Request,
        actor: Annotated[Principal, Depends(require_scopes("patient:export"))],
    ) -> dict[str, Any]:
        allowed = consent.tenant_of(patient_id) == actor.tenant_id
        await audit.record(_record(service, actor, patient_id, allowed))
        if not allowed:
            raise NotFoundError("patient not found")
        return {"service": service, "patient_id": patient_id, "data": await collect(patient_id)}

    return router


def _record(service: str, actor: Principal, patient_id: str, allowed: bool) -> AuditRecorded:
    return caller_record(
        actor,
        service=service,
        action="dsr.export" if allowed else "authz.denied",
        at=datetime.now(UTC),
        outcome="success" if allowed else "denied",
        patient_id=patient_id,
        reason=None if allowed else "patient_not_in_tenant",
    )
