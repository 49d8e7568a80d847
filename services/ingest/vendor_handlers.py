"""What happens to samples that arrive through a vendor connection (webhooks and pulls)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.ingest.connections import Connection, ConnectionStatus
from services.ingest.domain import SubmittedReading, normalize
from services.ingest.errors import ConsentUnknownError, InvalidReadingError
from services.ingest.handlers import Withheld, withhold_verdict
from services.ingest.ports import ConsentView, DeadLetterSink, ReadingPublisher
from services.ingest.vendors.common import VendorSample
from shared.events import DeadLetter, Reading

SERVICE = "ingest"


@dataclass
class VendorOutcome:
    """What became of a vendor batch (every sample is in exactly one bucket)."""

    published: int = 0
    duplicates: int = 0
    withheld: int = 0
    withheld_patients: list[Withheld] = field(default_factory=list)
    unknown_user_samples: int = 0
    inactive_connection_samples: int = 0
    invalid_samples: int = 0


def _sample_json(s: VendorSample) -> dict[str, object]:
    return {
        "metric": s.metric.value,
        "value": s.value,
        "unit": s.unit,
        "measured_at": s.measured_at.isoformat(),
        "source_id": s.source_id,
    }


def _letter(
    *, vendor: str, user: str, reason: str, detail: str, samples: list[VendorSample], at: datetime
) -> DeadLetter:
    """A dead letter that keeps the samples, so they can be replayed once the cause is fixed."""
    return DeadLetter(
        source_topic=f"webhook:{vendor}",
        reason=reason,
        detail=detail,
        key=f"{vendor}:{user}",
        payload=json.dumps([_sample_json(s) for s in samples]),
        service=SERVICE,
        failed_at=at,
    )


def _normalize_all(
    samples: list[VendorSample],
    connection: Connection,
    *,
    received_at: datetime,
    max_future_skew: timedelta,
) -> tuple[list[Reading], list[tuple[VendorSample, InvalidReadingError]]]:
    readings, invalid = [], []
    for s in samples:
        submitted = SubmittedReading(
            patient_id=connection.patient_id,
            metric=s.metric,
            value=s.value,
            unit=s.unit,
            measured_at=s.measured_at,
            source=connection.vendor.value,
            source_id=s.source_id,
            vendor_user=s.vendor_user,
        )
        try:
            readings.append(
                normalize(submitted, received_at=received_at, max_future_skew=max_future_skew)
            )
        except InvalidReadingError as exc:
            invalid.append((s, exc))
    return readings, invalid


async def accept_vendor_samples(
    samples: Sequence[VendorSample],
    *,
    vendor: str,
    connections: dict[str, Connection],
    received_at: datetime,
    max_future_skew: timedelta,
    publisher: ReadingPublisher,
    consent: ConsentView,
    dead_letters: DeadLetterSink,
) -> VendorOutcome:
    """Tie samples to patients, normalize, check consent, publish; dead-letter what cannot go
    on (unknown vendor user, inactive connection, implausible value). Returns after the broker
    acknowledged every reading and dead letter; raises BrokerUnavailableError otherwise."""
    if not consent.ready:
        raise ConsentUnknownError("consent view not caught up")
    by_user: dict[str, list[VendorSample]] = defaultdict(list)
    for s in samples:
        by_user[s.vendor_user].append(s)
    outcome, letters, readings = VendorOutcome(), [], []
    for user, user_samples in by_user.items():
        conn = connections.get(user)
        if conn is None or conn.status is not ConnectionStatus.ACTIVE:
            reason = "unknown_vendor_user" if conn is None else f"connection_{conn.status.value}"
            letters.append(
                _letter(
                    vendor=vendor,
                    user=user,
                    reason=reason,
                    samples=user_samples,
                    detail=f"{len(user_samples)} sample(s) not published",
                    at=received_at,
                )
            )
            if conn is None:
                outcome.unknown_user_samples += len(user_samples)
            else:
                outcome.inactive_connection_samples += len(user_samples)
            continue
        ok, invalid = _normalize_all(
            user_samples, conn, received_at=received_at, max_future_skew=max_future_skew
        )
        for s, exc in invalid:
            letters.append(
                _letter(
                    vendor=vendor,
                    user=user,
                    reason=f"invalid_{exc.field}",
                    detail=exc.message,
                    samples=[s],
                    at=received_at,
                )
            )
        outcome.invalid_samples += len(invalid)
        verdict = withhold_verdict(conn.patient_id, consent, conn.tenant_id)
        if verdict is not None:
            outcome.withheld += len(ok)
            outcome.withheld_patients.append(verdict)
            continue
        readings.extend(ok)
    unique = list({r.reading_id: r for r in readings}.values())
    outcome.duplicates = len(readings) - len(unique)
    if unique:
        await publisher.publish_readings(unique)
    if letters:
        await dead_letters.dead_letter(letters)
    outcome.published = len(unique)
    return outcome
