"""Pure ingest decisions: turn a submitted sample into a canonical Reading."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.ingest.errors import InvalidReadingError
from shared.events import Reading
from shared.ids import derive_id
from shared.vitals import CATALOG, ImplausibleValueError, Metric, UnitMismatchError, to_canonical


@dataclass(frozen=True)
class SubmittedReading:
    """A sample as a client sent it, already type-checked but not yet normalized."""

    patient_id: str
    metric: Metric
    value: float
    unit: str
    measured_at: datetime
    source: str
    source_id: str | None = None
    vendor_user: str | None = None  # vendor account the sample came from (webhooks)


def reading_id_for(sample: SubmittedReading) -> str:
    """Derive the reading id from (source, vendor user or patient, metric, time, vendor sample id):
    the same vendor sample always gets the same id, whichever request carried it."""
    return derive_id(
        "reading",
        sample.source,
        sample.vendor_user or sample.patient_id,
        sample.metric.value,
        sample.measured_at.isoformat(),
        sample.source_id or "",
    )


def normalize(
    sample: SubmittedReading, *, received_at: datetime, max_future_skew: timedelta
) -> Reading:
    """Validate units, plausibility and time, and return the canonical Reading."""
    if sample.measured_at - received_at > max_future_skew:
        raise InvalidReadingError(
            "measured_at",
            f"is more than {int(max_future_skew.total_seconds())} s in the future",
        )
    try:
        value = to_canonical(sample.metric, sample.value, sample.unit)
    except UnitMismatchError as exc:
        raise InvalidReadingError("unit", str(exc)) from exc
    except ImplausibleValueError as exc:
        raise InvalidReadingError("value", str(exc)) from exc
    spec = CATALOG[sample.metric]
    return Reading(
        reading_id=reading_id_for(sample),
        patient_id=sample.patient_id,
        source=sample.source,
        metric=sample.metric,
        value=value,
        unit=spec.unit,
        code=spec.loinc,
        measured_at=sample.measured_at,
        received_at=received_at,
    )
