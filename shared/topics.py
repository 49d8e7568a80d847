"""Topic registry: every topic, its key and its payload type, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shared.audit import AuditRecorded
from shared.events import (
    AlertEvent,
    ConsentChanged,
    DeadLetter,
    ErasureEvent,
    Event,
    Reading,
    ThresholdsChanged,
    VendorNotification,
)

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Topic(Generic[E]):
    """A Kafka topic with its payload model and the payload field used as message key."""

    name: str
    payload: type[E]
    key_field: str | None
    partitions: int = 6

    def key_of(self, event: E) -> bytes | None:
        """Return the message key for an event of this topic."""
        value = getattr(event, self.key_field) if self.key_field else None
        return None if value is None else str(value).encode()

    def encode(self, event: E) -> bytes:
        """Serialize an event as compact JSON."""
        # The bytes model_dump_json() would give, without its decode to str and our encode back.
        return event.__pydantic_serializer__.to_json(event)

    def decode(self, raw: bytes) -> E:
        """Parse and validate a message value; raises pydantic.ValidationError."""
        return self.payload.model_validate_json(raw)


READINGS: Topic[Reading] = Topic("readings.v1", Reading, key_field="patient_id")
ALERTS: Topic[AlertEvent] = Topic("alerts.v1", AlertEvent, key_field="patient_id")
CONSENT: Topic[ConsentChanged] = Topic("consent.v1", ConsentChanged, key_field="patient_id")
DEADLETTER: Topic[DeadLetter] = Topic("deadletter.v1", DeadLetter, key_field=None, partitions=1)
ERASURE: Topic[ErasureEvent] = Topic("erasure.v1", ErasureEvent, key_field="patient_id")
THRESHOLDS: Topic[ThresholdsChanged] = Topic(
    "thresholds.v1", ThresholdsChanged, key_field="patient_id"
)
AUDIT: Topic[AuditRecorded] = Topic("audit.v1", AuditRecorded, key_field="patient_id")
VENDOR_NOTIFICATIONS: Topic[VendorNotification] = Topic(
    "vendor-notifications.v1", VendorNotification, key_field="vendor_user"
)

ALL_TOPICS: tuple[Topic[Any], ...] = (
    READINGS,
    ALERTS,
    CONSENT,
    ERASURE,
    THRESHOLDS,
    DEADLETTER,
    AUDIT,
    VENDOR_NOTIFICATIONS,
)
