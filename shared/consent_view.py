"""Local consent view every service builds from consent.v1: read to the end before ready, then live.

The view answers "may I process this patient's data for this purpose?" from memory, so enforcement
costs nothing per event and keeps working while the consent service is down. Fail closed: before
the view has caught up, and for a patient with no active consent (CONSENT_REQUIRED=true), the
answer is no.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from shared.events import ConsentChanged, Purpose
from shared.topic_view import TopicFollower
from shared.topics import CONSENT

log = structlog.get_logger(__name__)

Listener = Callable[[ConsentChanged], Awaitable[None]]


class ConsentState:
    """The current consent state per (patient, purpose), and who owns each patient."""

    def __init__(self, *, consent_required: bool) -> None:
        self._consent_required = consent_required
        self._active: dict[tuple[str, Purpose], bool] = {}
        self._tenant: dict[str, str] = {}
        self.caught_up = False

    def apply(self, event: ConsentChanged) -> bool:
        """Apply a change; return True when the answer for (patient, purpose) changed."""
        key = (event.patient_id, event.purpose)
        before = self._active.get(key)
        self._active[key] = event.purpose_active
        self._tenant[event.patient_id] = event.tenant_id
        return before != event.purpose_active

    def allows(self, patient_id: str, purpose: Purpose) -> bool:
        """Return True when processing is allowed (fail closed until caught up)."""
        if not self.caught_up:
            return False
        known = self._active.get((patient_id, purpose))
        return (not self._consent_required) if known is None else known

    def tenant_of(self, patient_id: str) -> str | None:
        """Return the tenant a patient belongs to, if any consent was ever recorded."""
        return self._tenant.get(patient_id)


class KafkaConsentView(ConsentState):
    """ConsentState fed from consent.v1 (no consumer group: every instance reads everything)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        consent_required: bool,
        client_id: str,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        super().__init__(consent_required=consent_required)
        self._listeners: list[Listener] = []
        self._follower = TopicFollower(
            CONSENT,
            self._on_event,
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            fetch_max_wait_ms=fetch_max_wait_ms,
            on_ready=self._set_caught_up,
        )

    def _set_caught_up(self, ready: bool) -> None:
        self.caught_up = ready
        if ready:
            log.info("consent_view_caught_up")

    def on_change(self, listener: Listener) -> None:
        """Call `listener` for every live change after catch-up (e.g. close episodes on revoke)."""
        self._listeners.append(listener)

    async def run(self) -> None:
        """Catch up to the end of consent.v1, mark ready, then follow it until cancelled."""
        await self._follower.run()

    async def _on_event(self, event: ConsentChanged, live: bool) -> None:
        changed = self.apply(event)
        if not live:
            return
        log.info(
            "consent_view_updated",
            patient_id=event.patient_id,
            purpose=event.purpose.value,
            active=event.purpose_active,
        )
        if changed:
            for listener in self._listeners:
                await listener(event)
