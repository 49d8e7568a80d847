"""Ingest commands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.ingest.domain import SubmittedReading, normalize
from services.ingest.errors import ConsentUnknownError, InvalidReadingError
from services.ingest.ports import ConsentView, ReadingPublisher


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
class Accepted:
    """Outcome of an accepted batch."""

    reading_ids: list[str]
    published: int
    withheld_no_consent: int
    withheld_patients: list[str]


async def accept_readings(
    samples: Sequence[SubmittedReading],
    *,
    received_at: datetime,
    max_future_skew: timedelta,
    publisher: ReadingPublisher,
    consent: ConsentView,
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
    allowed = [r for r in unique if consent.allows_monitoring(r.patient_id)]
    if allowed:
        await publisher.publish_readings(allowed)
    withheld = sorted({r.patient_id for r in unique} - {r.patient_id for r in allowed})
    return Accepted(
        reading_ids=[r.reading_id for r in readings],
        published=len(allowed),
        withheld_no_consent=len(unique) - len(allowed),
        withheld_patients=withheld,
    )


async def erase_patient(patient_id: str) -> str:
    """Erasure: ingest stores nothing per patient yet (readings live only on readings.v1)."""
    return "nothing stored per patient; readings.v1 retention applies"


async def export_patient(patient_id: str) -> dict[str, object]:
    """What ingest holds about a patient: no vendor connections yet."""
    return {"connections": []}
