"""What the dispatcher makes of a claimed row: a message to send, later, or never."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifier.ports import Delivery
from services.notifier.records import DeliveryRow

SLACK_KEYS = ("blocks", "attachments", "unfurl_links", "unfurl_media")


@dataclass(frozen=True)
class Later:
    """Not now: try again at `at` (no attempt counted)."""

    at: datetime


@dataclass(frozen=True)
class Drop:
    """Never: the send is cancelled."""

    reason: str


def as_delivery(row: DeliveryRow, payload: dict[str, Any], ref: str | None) -> Delivery:
    """The provider-neutral message for the channel sender (ref: the message it edits or
    replies to)."""
    slack = {k: v for k, v in payload.items() if k in SLACK_KEYS}
    return Delivery(
        idempotency_key=row.key,
        channel=row.channel,
        recipient=row.recipient,
        text=str(payload.get("text", "")),
        title=payload.get("title"),
        slack=slack or None,
        update_ref=ref if row.role == "update" else None,
        thread_ref=ref if row.role == "reply" else None,
        data={k: str(v) for k, v in (payload.get("data") or {}).items()},
    )
