"""Outbox relay: publish committed outbox rows to Kafka, mark them published (at-least-once)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.consent.adapters.tables import outbox
from shared.kafka import KafkaEventPublisher, PublishFailedError
from shared.topics import ALL_TOPICS

log = structlog.get_logger(__name__)
TOPICS = {t.name: t for t in ALL_TOPICS}


class OutboxRelay:
    """Wakes on `notify()` after each commit, and polls as a safety net after crashes."""

    def __init__(
        self, *, engine: AsyncEngine, publisher: KafkaEventPublisher, poll_s: float = 1.0
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self.published = 0

    def notify(self) -> None:
        """Signal that new rows were committed."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while await self.relay_once():
                    pass
            except PublishFailedError:
                log.warning("outbox_publish_failed")

    async def relay_once(self, limit: int = 500) -> int:
        """Publish up to `limit` pending rows in order; return how many were published."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(outbox.c.id, outbox.c.topic, outbox.c.payload)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(limit)
                )
            ).all()
        if not rows:
            return 0
        for row_id, topic_name, payload in rows:
            topic = TOPICS[topic_name]
            await self._publisher.publish(topic, topic.decode(payload.encode()))
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id == row_id)
                    .values(published_at=datetime.now(UTC))
                )
        self.published += len(rows)
        return len(rows)
