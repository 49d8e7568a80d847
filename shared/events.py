"""Event contracts carried on Kafka. One pydantic model per payload; versioned by topic name."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from shared.vitals import Metric


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]

# Pseudonymous patient identifier issued by the healthtech; never a name, CPF, phone or e-mail.
PatientId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="Pseudonymous patient id (ASCII letters, digits, . _ : -).",
    ),
]


class Event(BaseModel):
    """Base of every event: immutable, unknown fields rejected, no NaN/Infinity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Reading(Event):
    """A canonical vital-sign sample, published on readings.v1 keyed by patient id."""

    reading_id: str = Field(
        description="Deterministic id: the same vendor sample always maps here."
    )
    patient_id: PatientId
    source: str = Field(description="Where the sample came from, e.g. 'fitbit', 'garmin', 'api'.")
    metric: Metric
    value: float = Field(description="Value in the canonical UCUM unit of the metric.")
    unit: str = Field(description="UCUM unit, canonical for the metric.")
    code: str = Field(description="LOINC code of the observation.")
    measured_at: UtcDatetime
    received_at: UtcDatetime


class Severity(StrEnum):
    """Traffic-light state of a patient."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class AlertKind(StrEnum):
    """Step in an alert's lifecycle."""

    OPENED = "opened"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class RuleRef(Event):
    """The rule that decided, with enough detail to audit the decision later."""

    rule_id: str
    version: str
    description: str
    threshold: str = Field(description="Human-readable condition, e.g. '> 120 /min'.")


class TriggerReading(Event):
    """The reading(s) behind an alert event."""

    reading_id: str
    metric: Metric
    value: float
    unit: str
    measured_at: UtcDatetime


class AlertEvent(Event):
    """An alert lifecycle event, published on alerts.v1 keyed by patient id."""

    event_id: str = Field(description="Unique per event; deterministic, so a replay repeats it.")
    alert_id: str = Field(description="Stable for one episode, from opened to resolved.")
    patient_id: PatientId
    kind: AlertKind
    severity: Severity
    previous_severity: Severity
    rule: RuleRef
    readings: tuple[TriggerReading, ...] = Field(
        description="Readings behind the event; empty only for events with a `reason`."
    )
    reason: str | None = Field(
        None, description="Why, when not the readings: e.g. 'consent_revoked' on a resolve."
    )
    occurred_at: UtcDatetime = Field(
        description="Event time: when the triggering reading was taken. No wall-clock field is "
        "carried, so a replay yields byte-identical events."
    )


class Purpose(StrEnum):
    """What a consent allows."""

    MONITORING = "monitoring"  # processing readings and alerting the care team
    NOTIFICATIONS = "notifications"  # contacting the patient
    SHARING = "sharing"  # export to an EHR or another controller


class ConsentChanged(Event):
    """A consent was granted or revoked; carries the patient's resulting state for the purpose.

    On consent.v1 keyed by patient id, so every service reads a patient's changes in order and the
    last event per (patient, purpose) is the current state.
    """

    event_id: str
    patient_id: PatientId
    tenant_id: str
    consent_id: str
    purpose: Purpose
    change: Literal["granted", "revoked"]
    purpose_active: bool = Field(description="Whether any consent for the purpose is active now.")
    changed_at: UtcDatetime


class ErasureEvent(Event):
    """Erasure of a patient's data (LGPD Art. 18 VI): requested by consent, completed per service."""

    event_id: str
    request_id: str
    patient_id: PatientId
    tenant_id: str
    kind: Literal["requested", "completed"]
    service: str | None = Field(None, description="The service that completed (kind=completed).")
    detail: str = ""
    occurred_at: UtcDatetime


class ThresholdsChanged(Event):
    """A patient's own bands were set or removed (None); on thresholds.v1 keyed by patient id.

    The rules database is the source of truth; the topic tells every rules instance at once.
    """

    event_id: str
    patient_id: PatientId
    tenant_id: str
    version: int = Field(ge=1, description="Increases with every change of this patient's bands.")
    thresholds: dict[str, Any] | None = Field(
        description="Per-metric bands as accepted by PUT .../thresholds; null when removed."
    )
    changed_at: UtcDatetime


class VendorNotification(Event):
    """A vendor said data changed and must be pulled (Fitbit, Google Health, Garmin ping); carried
    on vendor-notifications.v1 so the webhook can answer at once and the pull survives crashes."""

    notification_id: str = Field(description="Deterministic from the notification's content.")
    vendor: str
    vendor_user: str = Field(max_length=128)
    kind: str = Field(max_length=64, description="e.g. Fitbit collectionType, Garmin summary type.")
    detail: dict[str, str] = Field(
        default_factory=dict, description="What to pull: date, interval or callback URL."
    )
    received_at: UtcDatetime


class DeadLetter(Event):
    """Something that could not be processed, with where it came from and why."""

    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    reason: str
    detail: str = ""
    key: str | None = None
    payload: str = Field(
        description="Original bytes as UTF-8 (replacement chars where not decodable)."
    )
    service: str
    failed_at: UtcDatetime
    headers: dict[str, Any] = Field(default_factory=dict)
