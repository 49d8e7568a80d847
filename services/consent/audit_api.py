"""Audit trail HTTP routes (scope audit:read, tenant-scoped; reading the trail is itself audited)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from services.consent.audit_chain import ChainedEntry, VerificationReport
from shared.audit import AuditRecorded
from shared.auth import Principal, caller_record, require_scopes
from shared.http import PATIENT_ID_PATTERN

AuditReader = Annotated[Principal, Depends(require_scopes("audit:read"))]


class AuditPage(BaseModel):
    """A page of audit entries; pass `next_after_seq` as `after_seq` for the next one."""

    entries: list[ChainedEntry]
    next_after_seq: int | None


def _read_record(actor: Principal, action: str, patient_id: str | None) -> AuditRecorded:
    return caller_record(
        actor, service="consent", action=action, at=datetime.now(UTC), patient_id=patient_id
    )


def build_audit_router() -> APIRouter:
    """Routes of the audit API."""
    r = APIRouter(prefix="/v1/audit", tags=["audit"])

    @r.get(
        "",
        response_model=AuditPage,
        summary="Audit entries of the caller's tenant (with `admin`: also unauthenticated refusals)",
    )
    async def entries(
        request: Request,
        actor: AuditReader,
        patient_id: Annotated[str | None, Query(pattern=PATIENT_ID_PATTERN)] = None,
        after_seq: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AuditPage:
        audit: Any = request.app.state.audit_log
        await audit.record(_read_record(actor, "audit.read", patient_id))
        page = await audit.entries(
            tenant_id=actor.tenant_id,
            patient_id=patient_id,
            after_seq=after_seq,
            limit=limit,
            include_unscoped="admin" in actor.scopes,
        )
        return AuditPage(entries=page, next_after_seq=page[-1].seq if len(page) == limit else None)

    @r.get(
        "/verify",
        response_model=VerificationReport,
        summary="Verify the whole chain: hashes, links, signatures, checkpoints",
    )
    async def verify(request: Request, actor: AuditReader) -> VerificationReport:
        audit: Any = request.app.state.audit_log
        report: VerificationReport = await audit.verify()
        await audit.record(_read_record(actor, "audit.verify", None))
        return report

    return r
