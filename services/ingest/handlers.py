"""Ingest commands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.ingest.domain import SubmittedReading, normalize
from services.ingest.errors import InvalidReadingError
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
    unique = list({r.reading_id: r for r in readings}.values())
    allowed = [r for r in unique if consent.allows_monitoring(r.patient_id)]
    if allowed:
        await publisher.publish_readings(allowed)
    return Accepted(
        reading_ids=[r.reading_id for r in readings],
        published=len(allowed),
        withheld_no_consent=len(unique) - len(allowed),
    )
