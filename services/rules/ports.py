"""What the rules handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.rules.domain import MetricState
from shared.events import AlertEvent
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
