"""What the rules handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.rules.domain import MetricState
from shared.events import AlertEvent, Purpose
from shared.vitals import Metric


class AlertPublisher(Protocol):
    """Publishes alert events; returns only once the broker acknowledged."""

    async def publish_alerts(self, events: Sequence[AlertEvent]) -> None:
        """Publish events in order."""


class StateStore(Protocol):
    """Per (patient, metric) rule state."""

    async def load(self, patient_id: str, metric: Metric) -> MetricState | None:
        """Return the stored state, or None for a patient not seen yet."""

    async def save(self, patient_id: str, metric: Metric, state: MetricState) -> None:
        """Store the state."""

    async def of_patient(self, patient_id: str) -> dict[Metric, MetricState]:
        """Every metric state of one patient."""

    async def forget(self, patient_id: str) -> int:
        """Delete everything about a patient; return how many states were removed."""


class ConsentView(Protocol):
    """Local consent view."""

    def allows(self, patient_id: str, purpose: Purpose) -> bool:
        """Return True when processing is allowed for the purpose."""
