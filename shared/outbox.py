"""Transactional outbox: events are written in the same transaction as the change they announce,
then a relay publishes them to Kafka and marks them published (at-least-once, in order)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.dbtypes import UtcDateTime
from shared.events import Event
from shared.kafka import KafkaEventPublisher, PublishFailedError
from shared.topics import ALL_TOPICS, Topic

log = structlog.get_logger(__name__)
TOPICS = {t.name: t for t in ALL_TOPICS}


def outbox_table(name: str, metadata: MetaData) -> Table:
    """Declare a service's outbox table."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("topic", String(64), nullable=False),
        Column("message_key", String(128), nullable=True),
        Column("payload", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("published_at", UtcDateTime, nullable=True, index=True),
    )


async def enqueue(
    conn: AsyncConnection, table: Table, topic: Topic[Any], events: Sequence[Event], at: datetime
) -> None:
    """Add events to the outbox inside the caller's transaction."""
    for event in events:
        key = topic.key_of(event)
        await conn.execute(
            insert(table).values(
                topic=topic.name,
                message_key=key.decode() if key else None,
                payload=topic.encode(event).decode(),
                created_at=at,
            )
        )


class OutboxRelay:
    """Wakes on `notify()` after each commit, and polls as a safety net after crashes."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        table: Table,
        publisher: KafkaEventPublisher,
        poll_s: float = 1.0,
    ) -> None:
        self._engine = engine
        self._table = table
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
        t = self._table
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.c.id, t.c.topic, t.c.payload)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(limit)
                )
            ).all()
        for row_id, topic_name, payload in rows:
            topic = TOPICS[topic_name]
            await self._publisher.publish(topic, topic.decode(payload.encode()))
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(t).where(t.c.id == row_id).values(published_at=datetime.now(UTC))
                )
        self.published += len(rows)
        return len(rows)
