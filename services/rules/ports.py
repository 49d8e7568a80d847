"""What the rules handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from services.rules.domain import PatientState
from shared.events import AlertEvent, Purpose


class AlertPublisher(Protocol):
    """Publishes alert events; returns only once the broker acknowledged."""

    async def publish_alerts(self, events: Sequence[AlertEvent]) -> None:
        """Publish events in order."""


class StateStore(Protocol):
    """Durable per-patient rule state with a cache of the owned partitions' patients."""

    async def load(self, patient_id: str) -> PatientState | None:
        """Return the stored state, or None for a patient not seen yet."""

    async def load_many(self, patient_ids: Iterable[str]) -> dict[str, PatientState]:
        """Return the stored states of those patients who have one (one read for a batch)."""

    async def save_many(self, items: Iterable[tuple[str, int, PatientState]]) -> None:
        """Store (patient, partition, state) rows atomically."""

    def cached(self) -> dict[str, PatientState]:
        """States of the patients this instance currently owns."""

    def partition_of(self, patient_id: str) -> int | None:
        """Partition a cached patient was last seen on."""

    async def load_partitions(self, partitions: set[int]) -> None:
        """Restore the states of newly assigned partitions."""

    async def drop_partitions(self, partitions: set[int]) -> None:
        """Forget cached states of revoked partitions."""

    async def forget(self, patient_id: str) -> int:
        """Delete everything about a patient; return how many states were removed."""


class ConsentView(Protocol):
    """Local consent view."""

    def allows(self, patient_id: str, purpose: Purpose) -> bool:
        """Return True when processing is allowed for the purpose."""

    def tenant_of(self, patient_id: str) -> str | None:
        """Return the tenant the patient belongs to, when known."""
