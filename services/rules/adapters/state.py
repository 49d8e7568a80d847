"""In-memory rule state (walking skeleton; the rules-engine issue makes it durable)."""

from __future__ import annotations

from services.rules.domain import MetricState
from shared.vitals import Metric


class InMemoryStateStore:
    """State lives in this process only: a restart forgets open episodes."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, Metric], MetricState] = {}

    async def load(self, patient_id: str, metric: Metric) -> MetricState | None:
        """Return the state for (patient, metric)."""
        return self._states.get((patient_id, metric))

    async def save(self, patient_id: str, metric: Metric, state: MetricState) -> None:
        """Replace the state for (patient, metric)."""
        self._states[(patient_id, metric)] = state

    async def of_patient(self, patient_id: str) -> dict[Metric, MetricState]:
        """Every metric state of one patient."""
        return {m: st for (p, m), st in self._states.items() if p == patient_id}

    async def forget(self, patient_id: str) -> int:
        """Delete everything about a patient; return how many states were removed."""
        keys = [k for k in self._states if k[0] == patient_id]
        for key in keys:
            del self._states[key]
        return len(keys)
