"""Pure consent decisions, modelled on FHIR R4 Consent (status active | inactive).

A revoked consent is never reactivated: a new grant is a new record. Revocation is ex nunc and
idempotent. A purpose is allowed while at least one active consent covers the instant asked about.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from shared.events import ConsentChanged, Purpose
from shared.ids import derive_id


class LegalBasis(StrEnum):
    """LGPD legal bases a consent record may cite (health data is sensitive: Art. 11)."""

    SPECIFIC_CONSENT = "lgpd-art-11-I"  # specific, highlighted consent of the data subject
    PROTECTION_OF_LIFE = "lgpd-art-11-II-e"
    HEALTH_PROTECTION = "lgpd-art-11-II-f"


class PerformerType(StrEnum):
    """Who agreed (FHIR Consent.performer)."""

    PATIENT = "patient"
    GUARDIAN = "guardian"  # responsável legal


@dataclass(frozen=True)
class Evidence:
    """Proof of the manifestation (LGPD Art. 8 §2: the burden of proof is the controller's)."""

    type: str
    reference: str
    sha256: str | None = None


@dataclass(frozen=True)
class ConsentRecord:
    """One consent, as stored."""

    consent_id: str
    tenant_id: str
    patient_id: str
    purpose: Purpose
    status: str  # "active" | "inactive"
    legal_basis: LegalBasis
    notice_version: str
    performer_type: PerformerType
    performer_reference: str
    evidence: Evidence
    period_start: datetime
    period_end: datetime | None
    granted_at: datetime
    granted_by: str
    granted_client_id: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revocation_reason: str | None = None

    def covers(self, at: datetime) -> bool:
        """Return True when this consent is active and its period includes `at`."""
        return (
            self.status == "active"
            and self.period_start <= at
            and (self.period_end is None or at < self.period_end)
        )


class PeriodError(ValueError):
    """The consent period is empty or inverted."""


def new_consent(
    *,
    consent_id: str,
    tenant_id: str,
    patient_id: str,
    purpose: Purpose,
    legal_basis: LegalBasis,
    notice_version: str,
    performer_type: PerformerType,
    performer_reference: str,
    evidence: Evidence,
    period_start: datetime | None,
    period_end: datetime | None,
    granted_at: datetime,
    granted_by: str,
    granted_client_id: str,
) -> ConsentRecord:
    """Create an active consent; the server sets status, tenant, grantor and timestamps."""
    start = period_start or granted_at
    if period_end is not None and period_end <= start:
        raise PeriodError("period.end must be after period.start")
    return ConsentRecord(
        consent_id=consent_id,
        tenant_id=tenant_id,
        patient_id=patient_id,
        purpose=purpose,
        status="active",
        legal_basis=legal_basis,
        notice_version=notice_version,
        performer_type=performer_type,
        performer_reference=performer_reference,
        evidence=evidence,
        period_start=start,
        period_end=period_end,
        granted_at=granted_at,
        granted_by=granted_by,
        granted_client_id=granted_client_id,
    )


def revoke(
    record: ConsentRecord, *, at: datetime, by: str, reason: str
) -> tuple[ConsentRecord, bool]:
    """Revoke; return (record, changed). Revoking an inactive consent changes nothing."""
    if record.status != "active":
        return record, False
    return (
        replace(record, status="inactive", revoked_at=at, revoked_by=by, revocation_reason=reason),
        True,
    )


def purpose_active(records: list[ConsentRecord], purpose: Purpose, at: datetime) -> bool:
    """Return True when any consent for the purpose covers `at`."""
    return any(r.purpose is purpose and r.covers(at) for r in records)


def consent_changed(
    record: ConsentRecord, *, change: str, active: bool, at: datetime
) -> ConsentChanged:
    """Build the consent.v1 event for a grant or revocation."""
    return ConsentChanged(
        event_id=derive_id("consent-changed", record.consent_id, change),
        patient_id=record.patient_id,
        tenant_id=record.tenant_id,
        consent_id=record.consent_id,
        purpose=record.purpose,
        change="granted" if change == "granted" else "revoked",
        purpose_active=active,
        changed_at=at,
    )
