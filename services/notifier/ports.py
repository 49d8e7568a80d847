"""What the notifier handlers need from the outside world."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from shared.events import AlertEvent, Purpose


class Channel(StrEnum):
    """A way to reach a person."""

    SLACK = "slack"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    PUSH = "push"
    CONSOLE = "console"


@dataclass(frozen=True)
class Delivery:
    """One message to one recipient on one channel; `idempotency_key` is unique per send.

    recipient: Slack channel id or name (SLACK), E.164 phone number without prefix (SMS,
    WHATSAPP; the adapter adds `whatsapp:`), FCM registration token (PUSH), anything (CONSOLE).
    """

    idempotency_key: str
    channel: Channel
    recipient: str
    text: str
    title: str | None = None
    slack: dict[str, Any] | None = None  # Block Kit: {"blocks": [...], "attachments": [...]}
    update_ref: str | None = None  # Slack: provider_ref of the message to chat.update
    thread_ref: str | None = None  # Slack: provider_ref of the message to reply under
    data: dict[str, str] = field(default_factory=dict)  # push data payload (string values)


@dataclass(frozen=True)
class Receipt:
    """What the provider answered: its reference for the message (Slack "channel:ts",
    Twilio message SID, FCM message name) and how long the call took."""

    provider_ref: str
    latency_s: float


class ChannelSender(Protocol):
    """Delivers on one channel. Raises PermanentDeliveryError (never retry; fall back to the next
    channel) or TransientDeliveryError (retry later, honouring `retry_after_s` when set)."""

    channel: Channel

    async def send(self, delivery: Delivery) -> Receipt:
        """Deliver the message, or update/thread it when update_ref/thread_ref are set."""


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
