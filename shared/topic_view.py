"""Follow a topic from its beginning without a consumer group: read to the end, then live.

Every instance of a service reads everything (no partition split), which is what a local view of
a small, slowly changing topic needs (consent.v1, thresholds.v1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from shared.events import Event
from shared.topics import Topic

log = structlog.get_logger(__name__)
E = TypeVar("E", bound=Event)


class TopicFollower(Generic[E]):
    """Calls `apply(event, live)` for every message; `caught_up` once the initial end is reached."""

    def __init__(
        self,
        topic: Topic[E],
        apply: Callable[[E, bool], Awaitable[None]],
        *,
        bootstrap_servers: str,
        client_id: str,
        fetch_max_wait_ms: int = 500,
        on_ready: Callable[[bool], None] | None = None,
    ) -> None:
        self._on_ready = on_ready
        self._topic = topic
        self._apply = apply
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self.caught_up = False

    async def run(self) -> None:
        """Catch up, mark caught up, then follow until cancelled."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            partitions = await self._assign_all(consumer)
            await self._catch_up(consumer, await consumer.end_offsets(partitions))
            self._set_ready(True)
            log.info("topic_view_caught_up", topic=self._topic.name, partitions=len(partitions))
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        await self._deliver(record.value, live=True)
        finally:
            self._set_ready(False)
            await consumer.stop()

    def _set_ready(self, ready: bool) -> None:
        self.caught_up = ready
        if self._on_ready is not None:
            self._on_ready(ready)

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        while not (ids := consumer.partitions_for_topic(self._topic.name)):
            await consumer.topics()  # refreshes metadata: the topic may be being created
            await asyncio.sleep(0.2)
        partitions = [TopicPartition(self._topic.name, p) for p in sorted(ids)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        return partitions

    async def _catch_up(
        self, consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]
    ) -> None:
        pending = {tp for tp, end in targets.items() if end > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for records in batch.values():
                for record in records:
                    await self._deliver(record.value, live=False)
            for tp in list(pending):
                if await consumer.position(tp) >= targets[tp]:
                    pending.discard(tp)

    async def _deliver(self, raw: bytes | None, *, live: bool) -> None:
        try:
            event = self._topic.decode(raw or b"")
        except ValidationError:
            log.warning("topic_view_event_undecodable", topic=self._topic.name)
            return
        await self._apply(event, live)
