"""What the ingest handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.events import DeadLetter, Reading


class ReadingPublisher(Protocol):
    """Durably hands readings to the stream; returns only once all are acknowledged."""

    async def publish_readings(self, readings: Sequence[Reading]) -> None:
        """Publish; raise BrokerUnavailableError if the broker did not acknowledge."""


class ConsentView(Protocol):
    """Local view of consent: may this patient's readings be processed?"""

    @property
    def ready(self) -> bool:
        """True once the view has caught up with every consent change."""

    def allows_monitoring(self, patient_id: str) -> bool:
        """Return True when the patient has active consent for monitoring."""

    def tenant_of(self, patient_id: str) -> str | None:
        """Return the tenant the patient belongs to, when known."""


class DeadLetterSink(Protocol):
    """Durably records what could not be processed (deadletter.v1)."""

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Publish; raise BrokerUnavailableError if the broker did not acknowledge."""
