"""Kafka side of a service's lifespan: connect in the background, own every task, stop in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from shared.consumer import (
    BatchHandler,
    ConsumerMetrics,
    Handler,
    KafkaEventConsumer,
    PartitionsHook,
)
from shared.events import Event
from shared.kafka import KafkaEventPublisher, ensure_topics, retry_forever
from shared.settings import ServiceSettings
from shared.topics import ALL_TOPICS, Topic

log = structlog.get_logger(__name__)
YOUNG_GC_THRESHOLD = 7_000  # Python's default is 700
E = TypeVar("E", bound=Event)


class KafkaRuntime:
    """The Kafka clients of one service.

    `start()` returns at once so /healthz answers while the broker is still coming up; /readyz
    reports the clients' state. `stop()` cancels consumers first (they commit what they handled),
    then flushes and closes the producer.
    """

    def __init__(
        self, *, service: str, settings: ServiceSettings, registry: CollectorRegistry
    ) -> None:
        self.service = service
        self._settings = settings
        self.publisher = KafkaEventPublisher(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=f"{service}-producer",
            timeout_s=settings.kafka_publish_timeout_s,
        )
        self._metrics = ConsumerMetrics(registry)
        self._consumers: list[KafkaEventConsumer[Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._components: list[tuple[str, Callable[[], Awaitable[None]], Callable[[], bool]]] = []
        self.topics_ready = asyncio.Event()

    def add_consumer(
        self, topic: Topic[E], handler: Handler[E], *, group_id: str, background: bool = False
    ) -> None:
        """Register a per-message consumer; it starts with the runtime. `background`: nobody
        waits on its events (KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS instead of
        KAFKA_FETCH_MAX_WAIT_MS), so it fetches less often when idle."""
        self._consumers.append(self._consumer(topic, group_id, background, handler=handler))

    def add_batch_consumer(
        self,
        topic: Topic[E],
        handler: BatchHandler[E],
        *,
        group_id: str,
        on_revoked: PartitionsHook | None = None,
        on_assigned: PartitionsHook | None = None,
    ) -> None:
        """Register a consumer handing each partition's poll batch to `handler` at once; the
        hooks run inside the rebalance, before any message of the new assignment is fetched."""
        self._consumers.append(
            self._consumer(
                topic,
                group_id,
                False,
                batch_handler=handler,
                on_revoked=on_revoked,
                on_assigned=on_assigned,
            )
        )

    def _consumer(
        self, topic: Topic[E], group_id: str, background: bool, **handling: Any
    ) -> KafkaEventConsumer[E]:
        settings = self._settings
        wait = (
            settings.kafka_background_fetch_max_wait_ms
            if background
            else settings.kafka_fetch_max_wait_ms
        )
        return KafkaEventConsumer(
            topic=topic,
            group_id=group_id,
            service=self.service,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            deadletter=self.publisher,
            metrics=self._metrics,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            fetch_max_wait_ms=wait,
            **handling,
        )

    def add_component(
        self, name: str, run: Callable[[], Awaitable[None]], ready: Callable[[], bool]
    ) -> None:
        """Register a long-running Kafka-backed component (e.g. the consent view) and its check."""
        self._components.append((name, run, ready))

    def spawn(self, name: str, coro: Callable[[], Awaitable[None]]) -> None:
        """Run a background coroutine owned by this runtime (cancelled and awaited on stop)."""
        self._tasks.append(asyncio.create_task(_logged(name, coro), name=name))

    async def start(self) -> None:
        """Start connecting; returns immediately."""
        freeze_heap()
        self.spawn("kafka-connect", self._connect)

    async def _connect(self) -> None:
        if self._settings.kafka_create_topics:
            bootstrap = self._settings.kafka_bootstrap_servers
            await retry_forever(lambda: ensure_topics(bootstrap, ALL_TOPICS), what="topics")
        self.topics_ready.set()
        for name, run, _ in self._components:
            self.spawn(name, _supervised(name, run))
        await self.publisher.start()
        for consumer in self._consumers:
            self.spawn(f"consume-{id(consumer)}", consumer.run)
        freeze_heap()  # the clients' objects too

    async def stop(self) -> None:
        """Cancel consumers and background tasks (newest first), then close the producer."""
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.publisher.stop()
        gc.unfreeze()  # what the service built can be collected again (tests start many)

    def checks(self) -> dict[str, bool]:
        """Readiness of each Kafka client."""
        result = {"kafka_producer": self.publisher.ready}
        for consumer in self._consumers:
            result[f"kafka_consumer_{consumer.topic_name}"] = consumer.ready
        for name, _, ready in self._components:
            result[name] = ready()
        return result


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's sight (gc.freeze).

    Modules, the app, the engine and the clients live as long as the process, yet each full
    collection walked all of them: 270-460 ms pauses of the event loop under the bench load,
    most of the end-to-end p99. Frozen, a full collection walks only what was made since.
    """
    gc.collect(1)  # the young garbage of startup, cheaply; older garbage stays until stop
    gc.freeze()
    # A young collection every 7,000 allocations instead of 700: most of a message's objects die
    # before it runs. The notifier at 167 alerts/s: 345 ms of collections in phase A, not 805.
    gc.set_threshold(YOUNG_GC_THRESHOLD, 10, 10)


def _supervised(name: str, run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """Restart a component after a broker failure, with a short pause."""

    async def loop() -> None:
        while True:
            try:
                await run()
            except (KafkaError, OSError) as exc:
                log.warning("component_restarting", component=name, error=type(exc).__name__)
                await asyncio.sleep(1.0)

    return loop


async def _logged(name: str, coro: Callable[[], Awaitable[None]]) -> None:
    try:
        await coro()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background_task_crashed", task=name)
        raise
