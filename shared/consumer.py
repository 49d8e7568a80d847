"""At-least-once Kafka consumer on aiokafka: manual commits after the handler, dead letters, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from shared.events import DeadLetter, Event
from shared.kafka import (
    KafkaEventPublisher,
    PublishFailedError,
    UnprocessableEventError,
    retry_forever,
)
from shared.topics import DEADLETTER, Topic

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class MessageContext:
    """Where a message came from, for logging, dedup and dead-lettering."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


class ConsumerMetrics:
    """Per-service consumer counters, registered on the service's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "kafka_messages_consumed", "Messages handled", ["topic"], registry=registry
        )
        self.dead_lettered = Counter(
            "kafka_messages_dead_lettered",
            "Messages sent to deadletter.v1",
            ["topic", "reason"],
            registry=registry,
        )
        self.retried = Counter(
            "kafka_message_retries",
            "Transient handler failures retried",
            ["topic"],
            registry=registry,
        )
        self.handle_seconds = Histogram(
            "kafka_message_handle_seconds", "Handler duration", ["topic"], registry=registry
        )


Handler = Callable[[E, MessageContext], Awaitable[None]]


@dataclass(frozen=True)
class Rejection:
    """A message of a batch that can never be processed: it goes to deadletter.v1."""

    ctx: MessageContext
    reason: str
    detail: str = ""


# Handles one poll's batch at once, the messages of every partition it returned (e.g. to publish
# all alerts and await acks once, or to write them in one transaction); a partition's messages
# stay in offset order. Returns the messages to dead-letter. Raising means "transient": the whole
# batch is retried.
BatchHandler = Callable[[list[tuple[E, MessageContext]]], Awaitable[list[Rejection]]]
PartitionsHook = Callable[[set[int]], Awaitable[None]]


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaEventConsumer[Any]) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._owner.commit_processed(set(revoked))
        if self._owner.on_revoked is not None:
            await self._owner.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("kafka_partitions_assigned", partitions=sorted(tp.partition for tp in assigned))
        if self._owner.on_assigned is not None:
            await self._owner.on_assigned({tp.partition for tp in assigned})


class KafkaEventConsumer(Generic[E]):
    """At-least-once consumer: offsets are committed only after the handler finished.

    Undecodable or unprocessable messages go to deadletter.v1 and the consumer moves on; any other
    handler failure is transient and retried from the same offset with backoff.
    """

    def __init__(
        self,
        *,
        topic: Topic[E],
        handler: Handler[E] | None = None,
        batch_handler: BatchHandler[E] | None = None,
        on_revoked: PartitionsHook | None = None,
        on_assigned: PartitionsHook | None = None,
        group_id: str,
        service: str,
        bootstrap_servers: str,
        deadletter: KafkaEventPublisher,
        metrics: ConsumerMetrics,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        fetch_max_wait_ms: int = 500,
        max_records: int = 500,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self._topic = topic
        self._handler = handler
        self._batch_handler = batch_handler
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned
        self._group_id = group_id
        self._service = service
        self._bootstrap = bootstrap_servers
        self._deadletter = deadletter
        self._metrics = metrics
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._max_records = max_records
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._processed: dict[TopicPartition, int] = {}
        self.ready = False

    @property
    def topic_name(self) -> str:
        """Name of the consumed topic."""
        return self._topic.name

    async def run(self) -> None:
        """Consume until cancelled; owned and awaited by the service lifespan."""
        await retry_forever(self._start, what=f"consumer {self._topic.name}")
        self.ready = True
        assert self._consumer is not None
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=500, max_records=self._max_records)
                if self._batch_handler is None:
                    for tp, records in batch.items():
                        await self._handle_partition(tp, records)
                elif batch:
                    await self._handle_batch(batch, self._batch_handler)
                await self.commit_processed(None)
        finally:
            self.ready = False
            await self._shutdown()

    async def _start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=f"{self._service}-{self._topic.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
            rebalance_timeout_ms=self._session_timeout_ms,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        consumer.subscribe([self._topic.name], listener=_CommitOnRevoke(self))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        log.info("kafka_consumer_started", topic=self._topic.name, group_id=self._group_id)

    async def _shutdown(self) -> None:
        if self._consumer is None:
            return
        try:
            # on_partitions_revoked is not called by stop(): commit explicitly first.
            await self.commit_processed(None)
        finally:
            await self._consumer.stop()
            self._consumer = None

    async def commit_processed(self, only: set[TopicPartition] | None) -> None:
        """Commit offset+1 of every handled message (optionally only for some partitions)."""
        if self._consumer is None or not self._processed:
            return
        offsets = {tp: off for tp, off in self._processed.items() if only is None or tp in only}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The messages will be redelivered; handlers are idempotent, so that is safe.
            log.warning("kafka_commit_failed", error=type(exc).__name__)
            return
        for tp in offsets:
            self._processed.pop(tp, None)

    async def _handle_partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        for record in records:
            ctx = _context(record)
            with structlog.contextvars.bound_contextvars(
                topic=ctx.topic, partition=ctx.partition, offset=ctx.offset, event_id=None
            ):
                done = await self._handle_record(record, ctx)
            if not done:
                # Transient failure: rewind to this message and retry it after a pause.
                return await self._retry_later({tp: record.offset})
            self._processed[tp] = record.offset + 1

    async def _handle_batch(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], handler: BatchHandler[E]
    ) -> None:
        """Hand one poll's messages, every partition's, to the handler in one call (one
        transaction or one publish for all of them); any failure rewinds every partition."""
        firsts = {tp: records[0].offset for tp, records in batch.items()}
        decoded: list[tuple[E, MessageContext]] = []
        by_place = {(r.partition, r.offset): r for records in batch.values() for r in records}
        for records in batch.values():
            for record in records:
                ctx = _context(record)
                try:
                    decoded.append((self._topic.decode(record.value or b""), ctx))
                except ValidationError as exc:
                    if not await self._dead_letter(record, "undecodable", _summarize(exc)):
                        return await self._retry_later(firsts)
        try:
            with self._metrics.handle_seconds.labels(self._topic.name).time():
                rejections = await handler(decoded)
        except Exception as exc:
            log.warning("event_batch_failed", error=type(exc).__name__, size=len(decoded))
            return await self._retry_later(firsts)
        for rejection in rejections:
            record = by_place[(rejection.ctx.partition, rejection.ctx.offset)]
            if not await self._dead_letter(record, rejection.reason, rejection.detail):
                return await self._retry_later(firsts)
        self._metrics.consumed.labels(self._topic.name).inc(len(decoded) - len(rejections))
        for tp, records in batch.items():
            self._processed[tp] = records[-1].offset + 1

    async def _retry_later(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        for tp, offset in offsets.items():
            self._consumer.seek(tp, offset)
        self._metrics.retried.labels(self._topic.name).inc()
        await asyncio.sleep(1.0)  # back off before the redelivery

    async def _handle_record(self, record: ConsumerRecord, ctx: MessageContext) -> bool:
        try:
            event = self._topic.decode(record.value or b"")
        except ValidationError as exc:
            return await self._dead_letter(record, "undecodable", _summarize(exc))
        event_id = getattr(event, "event_id", None) or getattr(event, "reading_id", None)
        structlog.contextvars.bind_contextvars(event_id=event_id)
        assert self._handler is not None
        try:
            with self._metrics.handle_seconds.labels(self._topic.name).time():
                await self._handler(event, ctx)
        except UnprocessableEventError as exc:
            return await self._dead_letter(record, exc.reason, exc.detail)
        except Exception as exc:
            # Only the type: exception text may quote patient data.
            log.warning("event_handling_failed", error=type(exc).__name__)
            return False
        self._metrics.consumed.labels(self._topic.name).inc()
        return True

    async def _dead_letter(self, record: ConsumerRecord, reason: str, detail: str) -> bool:
        letter = DeadLetter(
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            reason=reason,
            detail=detail[:2000],
            key=record.key.decode(errors="replace") if record.key else None,
            payload=(record.value or b"").decode(errors="replace"),
            service=self._service,
            failed_at=datetime.now(UTC),
        )
        try:
            await self._deadletter.publish(DEADLETTER, letter)
        except PublishFailedError:
            log.warning("dead_letter_publish_failed", reason=reason)
            return False
        self._metrics.dead_lettered.labels(self._topic.name, reason).inc()
        log.warning("event_dead_lettered", reason=reason)
        return True


def _context(record: ConsumerRecord) -> MessageContext:
    return MessageContext(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        headers=dict(record.headers or ()),
    )


def _summarize(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
