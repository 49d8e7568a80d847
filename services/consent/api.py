"""Consent HTTP routes: grant, list, revoke, status (FHIR R4 Consent-shaped), all tenant-scoped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.consent.domain import ConsentRecord, Evidence, LegalBasis, PerformerType
from services.consent.errors import (
    ConsentNotFoundError,
    InvalidConsentError,
    PatientNotFoundError,
)
from services.consent.handlers import (
    Context,
    GrantCommand,
    consent_status,
    grant_consent,
    list_consents,
    revoke_consent,
)
from shared.auth import Principal, require_scopes
from shared.events import Purpose
from shared.http import (
    ApiError,
    NotFoundError,
    PatientPath,
    reject_duplicate_keys,
    require_json,
)

ConsentPath = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


class Strict(BaseModel):
    """Request bodies: unknown fields (status, tenant_id, revoked_by...) are refused (T17)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class PerformerIn(Strict):
    type: PerformerType
    reference: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")


class EvidenceIn(Strict):
    type: Literal["signed-form", "electronic-signature", "recorded-verbal", "app-checkbox"]
    reference: str = Field(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class PeriodIn(Strict):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


class GrantIn(Strict):
    """A grant: purpose, legal basis, evidence, performer (the server sets status and tenant)."""

    purpose: Purpose
    legal_basis: LegalBasis = LegalBasis.SPECIFIC_CONSENT
    notice_version: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
    performer: PerformerIn
    evidence: EvidenceIn
    period: PeriodIn = PeriodIn()


class RevokeIn(Strict):
    reason: str = Field(min_length=3, max_length=500)


class ConsentOut(BaseModel):
    """A consent as returned to callers."""

    id: str
    patient_id: str
    purpose: Purpose
    status: Literal["active", "inactive"]
    legal_basis: LegalBasis
    notice_version: str
    performer: dict[str, str]
    evidence: dict[str, str | None]
    period: dict[str, datetime | None]
    granted_at: datetime
    granted_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    revocation_reason: str | None

    @classmethod
    def of(cls, r: ConsentRecord) -> ConsentOut:
        """Render a record."""
        return cls(
            id=r.consent_id,
            patient_id=r.patient_id,
            purpose=r.purpose,
            status=r.status,  # type: ignore[arg-type]
            legal_basis=r.legal_basis,
            notice_version=r.notice_version,
            performer={"type": r.performer_type.value, "reference": r.performer_reference},
            evidence={
                "type": r.evidence.type,
                "reference": r.evidence.reference,
                "sha256": r.evidence.sha256,
            },
            period={"start": r.period_start, "end": r.period_end},
            granted_at=r.granted_at,
            granted_by=r.granted_by,
            revoked_at=r.revoked_at,
            revoked_by=r.revoked_by,
            revocation_reason=r.revocation_reason,
        )


class ConsentStatusOut(BaseModel):
    patient_id: str
    purpose: Purpose
    allowed: bool
    checked_at: datetime


class UnprocessableError(ApiError):
    status = 422
    code = "invalid_consent"


def context(request: Request, actor: Principal) -> Context:
    """Build the handler context for this request."""
    state = request.app.state
    return Context(
        actor=actor,
        now=datetime.now(UTC),
        store=state.store,
        audit=state.audit_log,
        outbox=state.relay,
    )


def _grant_command(patient_id: str, body: GrantIn) -> GrantCommand:
    return GrantCommand(
        patient_id=patient_id,
        purpose=body.purpose,
        legal_basis=body.legal_basis,
        notice_version=body.notice_version,
        performer_type=body.performer.type,
        performer_reference=body.performer.reference,
        evidence=Evidence(body.evidence.type, body.evidence.reference, body.evidence.sha256),
        period_start=body.period.start,
        period_end=body.period.end,
    )


def build_router() -> APIRouter:
    """Routes of the consent API."""
    r = APIRouter(prefix="/v1/patients/{patient_id}", tags=["consent"])
    json_body: list[Any] = [Depends(require_json), Depends(reject_duplicate_keys)]

    @r.post(
        "/consents",
        status_code=201,
        response_model=ConsentOut,
        dependencies=json_body,
        summary="Grant a consent (scope consent:write)",
    )
    async def grant(
        patient_id: PatientPath,
        body: GrantIn,
        request: Request,
        actor: Annotated[Principal, Depends(require_scopes("consent:write"))],
    ) -> ConsentOut:
        try:
            record = await grant_consent(_grant_command(patient_id, body), context(request, actor))
        except InvalidConsentError as exc:
            raise UnprocessableError(str(exc)) from exc
        except PatientNotFoundError as exc:
            raise NotFoundError("patient not found") from exc
        return ConsentOut.of(record)

    @r.get(
        "/consents",
        response_model=list[ConsentOut],
        summary="List a patient's consents (scope consent:read)",
    )
    async def list_(
        patient_id: PatientPath,
        request: Request,
        actor: Annotated[Principal, Depends(require_scopes("consent:read"))],
    ) -> list[ConsentOut]:
        try:
            return [
                ConsentOut.of(c) for c in await list_consents(patient_id, context(request, actor))
            ]
        except PatientNotFoundError as exc:
            raise NotFoundError("patient not found") from exc

    @r.post(
        "/consents/{consent_id}/revoke",
        response_model=ConsentOut,
        dependencies=json_body,
        summary="Revoke a consent (scope consent:revoke); idempotent, reason required",
    )
    async def revoke(
        patient_id: PatientPath,
        consent_id: ConsentPath,
        body: RevokeIn,
        request: Request,
        actor: Annotated[Principal, Depends(require_scopes("consent:revoke"))],
    ) -> ConsentOut:
        try:
            record, _ = await revoke_consent(
                patient_id, consent_id, body.reason, context(request, actor)
            )
        except (PatientNotFoundError, ConsentNotFoundError) as exc:
            raise NotFoundError("consent not found") from exc
        return ConsentOut.of(record)

    @r.get(
        "/consent-status",
        response_model=ConsentStatusOut,
        summary="May this patient's data be processed for a purpose now? (scope consent:read)",
    )
    async def status(
        patient_id: PatientPath,
        purpose: Annotated[Purpose, Query()],
        request: Request,
        actor: Annotated[Principal, Depends(require_scopes("consent:read"))],
    ) -> ConsentStatusOut:
        ctx = context(request, actor)
        try:
            allowed = await consent_status(patient_id, purpose, ctx)
        except PatientNotFoundError as exc:
            raise NotFoundError("patient not found") from exc
        return ConsentStatusOut(
            patient_id=patient_id, purpose=purpose, allowed=allowed, checked_at=ctx.now
        )

    return r
