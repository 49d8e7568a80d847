"""Consent adapter of the ingest ConsentView port, backed by the shared consent.v1 view."""

from __future__ import annotations

from shared.consent_view import ConsentState
from shared.events import Purpose


class ConsentViewAdapter:
    """Answer from the local consent.v1 view (fail closed until it has caught up)."""

    def __init__(self, state: ConsentState) -> None:
        self._state = state

    @property
    def ready(self) -> bool:
        """True once the view has caught up with consent.v1."""
        return self._state.caught_up

    def allows_monitoring(self, patient_id: str) -> bool:
        """Return True when the patient has active consent for monitoring."""
        return self._state.allows(patient_id, Purpose.MONITORING)

    def tenant_of(self, patient_id: str) -> str | None:
        """Return the tenant the patient belongs to, when known."""
        return self._state.tenant_of(patient_id)
