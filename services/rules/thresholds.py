"""Per-patient thresholds: set, read, remove (audited), and apply changes from thresholds.v1."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from services.rules.adapters.thresholds_store import SqlThresholdsStore, StoredThresholds
from services.rules.domain import PatientThresholds, parse_patient_thresholds
from services.rules.errors import RulesError
from services.rules.handlers import RulesEngine
from shared.audit import AuditRecorded, AuditSink, Outcome
from shared.auth import Principal, caller_record
from shared.events import ThresholdsChanged

log = structlog.get_logger(__name__)


class PatientNotFoundError(RulesError):
    """Unknown patient or another tenant's (the same answer for both)."""


def override(version: int, bands: dict[str, Any], engine: RulesEngine) -> PatientThresholds:
    """Validate bands against the rule set; raises ThresholdError naming the field."""
    return parse_patient_thresholds({"revision": str(version), "bands": bands}, rules=engine.rules)


def apply(engine: RulesEngine, patient_id: str, version: int, bands: dict[str, Any] | None) -> None:
    """Install (or drop) a patient's bands unless a newer version is already in place."""
    current = engine.thresholds.get(patient_id)
    if current is not None and int(current.revision) >= version:
        return
    if bands is None:
        engine.thresholds.pop(patient_id, None)
    else:
        engine.thresholds[patient_id] = override(version, bands, engine)


async def load_all(engine: RulesEngine, store: SqlThresholdsStore) -> None:
    """Load every patient's bands from the database (the source of truth) at startup."""
    for stored in await store.all():
        apply(engine, stored.patient_id, stored.version, stored.bands)


async def on_thresholds_changed(
    event: ThresholdsChanged, _live: bool, *, engine: RulesEngine
) -> None:
    """Apply another instance's change (or our own, again: versions make it idempotent)."""
    bands = None if event.thresholds is None else event.thresholds.get("bands", {})
    apply(engine, event.patient_id, event.version, bands)


def _owned(engine: RulesEngine, patient_id: str, actor: Principal) -> bool:
    return engine.consent.tenant_of(patient_id) == actor.tenant_id


async def set_thresholds(
    patient_id: str,
    bands: dict[str, Any],
    *,
    actor: Principal,
    engine: RulesEngine,
    store: SqlThresholdsStore,
    audit: AuditSink,
    now: datetime,
) -> StoredThresholds:
    """Validate, persist with its event, apply here at once, audit."""
    if not _owned(engine, patient_id, actor):
        await audit.record(_record(actor, "authz.denied", patient_id, now, "denied"))
        raise PatientNotFoundError(patient_id)
    current = await store.get(patient_id)
    override((current.version if current else 0) + 1, bands, engine)  # validate before writing
    stored = await store.put(
        patient_id=patient_id, tenant_id=actor.tenant_id, bands=bands, by=actor.sub, at=now
    )
    apply(engine, patient_id, stored.version, bands)
    await audit.record(
        _record(actor, "thresholds.set", patient_id, now, "success", version=str(stored.version))
    )
    return stored


async def get_thresholds(
    patient_id: str,
    *,
    actor: Principal,
    engine: RulesEngine,
    store: SqlThresholdsStore,
    audit: AuditSink,
    now: datetime,
) -> StoredThresholds | None:
    """Read a patient's bands (audited)."""
    if not _owned(engine, patient_id, actor):
        await audit.record(_record(actor, "authz.denied", patient_id, now, "denied"))
        raise PatientNotFoundError(patient_id)
    await audit.record(_record(actor, "thresholds.read", patient_id, now, "success"))
    return await store.get(patient_id)


async def remove_thresholds(
    patient_id: str,
    *,
    actor: Principal,
    engine: RulesEngine,
    store: SqlThresholdsStore,
    audit: AuditSink,
    now: datetime,
) -> bool:
    """Remove a patient's bands (back to the rule set); return whether there were any."""
    if not _owned(engine, patient_id, actor):
        await audit.record(_record(actor, "authz.denied", patient_id, now, "denied"))
        raise PatientNotFoundError(patient_id)
    version = await store.delete(patient_id=patient_id, tenant_id=actor.tenant_id, at=now)
    if version is not None:
        apply(engine, patient_id, version, None)
        await audit.record(
            _record(actor, "thresholds.removed", patient_id, now, "success", version=str(version))
        )
    return version is not None


def _record(
    actor: Principal, action: str, patient_id: str, at: datetime, outcome: Outcome, **details: str
) -> AuditRecorded:
    return caller_record(
        actor,
        service="rules",
        action=action,
        at=at,
        outcome=outcome,
        patient_id=patient_id,
        purpose="monitoring",
        reason="patient_not_in_tenant" if outcome == "denied" else None,
        details=details,
    )
