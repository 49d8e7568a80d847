"""What the consent handlers need from the outside world."""

from __future__ import annotations

from typing import Any, Protocol

from shared.audit import AuditRecorded


class AuditLog(Protocol):
    """Appends records to the signed, hash-chained audit trail inside a store transaction."""

    async def append(self, conn: Any, record: AuditRecorded) -> None:
        """Append within the caller's transaction (the change and its audit commit together)."""


class Notifier(Protocol):
    """Wakes the outbox relay after a commit."""

    def notify(self) -> None:
        """Signal new outbox rows."""
