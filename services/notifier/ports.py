"""What the notifier handlers need from the outside world."""

from __future__ import annotations

from typing import Protocol

from shared.events import AlertEvent, Purpose


class AlertSender(Protocol):
    """Delivers an alert to the on-call channel."""

    async def send_alert(self, event: AlertEvent) -> None:
        """Deliver; raise PermanentDeliveryError or TransientDeliveryError on failure."""


class SeenEvents(Protocol):
    """Remembers which event ids were handled, so a redelivered event is not sent twice."""

    def seen(self, event_id: str) -> bool:
        """Return True when the event was already handled."""

    def remember(self, event_id: str) -> None:
        """Record the event as handled."""


class ConsentView(Protocol):
    """Local consent view."""

    def allows(self, patient_id: str, purpose: Purpose) -> bool:
        """Return True when processing is allowed for the purpose."""
