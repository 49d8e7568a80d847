"""Ingest commands."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from services.ingest.domain import SubmittedReading, normalize
from services.ingest.errors import ConsentUnknownError, InvalidReadingError
from services.ingest.ports import ConsentView, ReadingPublisher
from shared.audit import AuditActor, AuditRecorded, AuditSink
from shared.kafka import PublishFailedError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RejectedSample:
    """Why sample `index` of a batch was refused."""

    index: int
    field: str
    message: str


class BatchRejectedError(Exception):
    """At least one sample is invalid; nothing of the batch was published."""

    def __init__(self, rejected: list[RejectedSample]) -> None:
        super().__init__(f"{len(rejected)} invalid reading(s)")
        self.rejected = rejected


@dataclass(frozen=True)
class Withheld:
    """A patient whose readings were not passed on, and why."""

    patient_id: str
    tenant_id: str | None
    reason: str  # "no_active_consent" | "patient_not_in_tenant"


@dataclass(frozen=True)
class Accepted:
    """Outcome of an accepted batch."""

    reading_ids: list[str]
    published: int
    withheld_no_consent: int
    withheld: list[Withheld]


async def accept_readings(
    samples: Sequence[SubmittedReading],
    *,
    received_at: datetime,
    max_future_skew: timedelta,
    publisher: ReadingPublisher,
    consent: ConsentView,
    tenant_id: str,
) -> Accepted:
    """Normalize a batch all-or-nothing and publish it; returns after the broker acknowledged."""
    readings = []
    rejected = []
    for index, sample in enumerate(samples):
        try:
            readings.append(
                normalize(sample, received_at=received_at, max_future_skew=max_future_skew)
            )
        except InvalidReadingError as exc:
            rejected.append(RejectedSample(index=index, field=exc.field, message=exc.message))
    if rejected:
        raise BatchRejectedError(rejected)
    if not consent.ready:
        raise ConsentUnknownError("consent view not caught up")
    unique = list({r.reading_id: r for r in readings}.values())
    verdicts = {p: withhold_verdict(p, consent, tenant_id) for p in {r.patient_id for r in unique}}
    allowed = [r for r in unique if verdicts[r.patient_id] is None]
    if allowed:
        await publisher.publish_readings(allowed)
    return Accepted(
        reading_ids=[r.reading_id for r in readings],
        published=len(allowed),
        withheld_no_consent=len(unique) - len(allowed),
        withheld=sorted((w for w in verdicts.values() if w), key=lambda w: w.patient_id),
    )


def withhold_verdict(patient_id: str, consent: ConsentView, tenant_id: str) -> Withheld | None:
    """Return None when the patient's readings may be published, else why not."""
    owner = consent.tenant_of(patient_id)
    if owner is not None and owner != tenant_id:
        return Withheld(patient_id, owner, "patient_not_in_tenant")
    if not consent.allows_monitoring(patient_id):
        return Withheld(patient_id, owner, "no_active_consent")
    return None


async def audit_withheld(withheld: list[Withheld], *, sink: AuditSink, actor: AuditActor) -> None:
    """Record, per patient, that readings were dropped and why (best effort: logged on failure).

    `actor` is the validated caller (`actor_of(principal)`) or the vendor that pushed the data.
    """
    now = datetime.now(UTC)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    for w in withheld:
        record = AuditRecorded(
            event_id=str(uuid.uuid4()),
            occurred_at=now,
            service="ingest",
            actor=actor,
            action="reading.dropped",
            patient_id=w.patient_id,
            tenant_id=w.tenant_id or actor.tenant_id,
            purpose="monitoring",
            outcome="denied",
            reason=w.reason,
            request_id=request_id,
        )
        try:
            await sink.record(record)
        except PublishFailedError:
            log.warning("audit_record_failed", action="reading.dropped")
