"""In-process fan-out of alert changes to the dashboard's live streams (one queue per subscriber).

Every change is published with the tenant of its alert, and each subscriber says which tenants it
may see: a stream never carries another tenant's alert.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import structlog

log = structlog.get_logger(__name__)

AlertSummary = dict[str, Any]
TenantedSummary = tuple[str | None, AlertSummary]  # (the alert's tenant, None: unknown; summary)
# The open alerts a viewer of that tenant may see (tenant None: every tenant's), filtered where they
# are read, so other tenants' alerts never take the rows a snapshot may hold.
SnapshotProvider = Callable[[str | None, bool], Awaitable[list[TenantedSummary]]]  # tenant, admin
Audience = Callable[[str | None], bool]  # may this subscriber see an alert of that tenant?
EventKind = Literal["snapshot", "alert", "keepalive"]


@dataclass(frozen=True)
class FeedEvent:
    """One item of a subscription: the snapshot, one changed alert, or an idle keepalive."""

    kind: EventKind
    data: dict[str, Any] | None = None


KEEPALIVE = FeedEvent("keepalive")
_CLOSED = object()  # queued by close(): the iterator ends after it


class Subscription:
    """What one subscriber reads: its snapshot first, then every published change, in order."""

    def __init__(self, *, audience: Audience, queue_size: int, keepalive_s: float) -> None:
        self.audience = audience
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)
        self._keepalive_s = keepalive_s
        self._snapshot: FeedEvent | None = None
        self.closed = False

    def offer(self, summary: AlertSummary) -> bool:
        """Queue a change without waiting; False when the queue is full (the reader is too slow)."""
        if self.closed:
            return True
        try:
            self._queue.put_nowait(summary)
        except asyncio.QueueFull:
            return False
        return True

    def close(self) -> None:
        """End the iteration now: queued changes are dropped, the reader stops at once."""
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)

    def set_snapshot(self, alerts: list[AlertSummary]) -> None:
        """Hand the snapshot the iteration starts with."""
        self._snapshot = FeedEvent("snapshot", {"alerts": alerts})

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> FeedEvent:
        if self._snapshot is not None:
            snapshot, self._snapshot = self._snapshot, None
            return snapshot
        try:
            item = await asyncio.wait_for(self._queue.get(), self._keepalive_s)
        except TimeoutError:
            return KEEPALIVE
        if item is _CLOSED:
            raise StopAsyncIteration
        return FeedEvent("alert", cast(AlertSummary, item))


class LiveFeed:
    """Fan alert summaries out to subscribers; a subscriber whose queue is full is dropped (its
    stream ends, and the client reconnects for a fresh snapshot) so publishers never wait.

    Call publish() on the event loop's thread (asyncio queues are not thread-safe).
    """

    def __init__(
        self, snapshot: SnapshotProvider, *, queue_size: int = 256, keepalive_s: float = 15.0
    ) -> None:
        self._snapshot = snapshot
        self._queue_size = queue_size
        self._keepalive_s = keepalive_s
        self._subscribers: set[Subscription] = set()

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def publish(self, summary: AlertSummary, *, tenant_id: str | None) -> None:
        """Offer one changed alert to every subscriber that may see its tenant; never blocks,
        never raises for a reader."""
        item = dict(summary)  # the caller may reuse its dict; readers see the state at publish time
        for sub in list(self._subscribers):
            if sub.audience(tenant_id) and not sub.offer(item):
                self._drop(sub)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, audience: Audience, *, tenant_id: str | None = None, admin: bool = True
    ) -> AsyncIterator[Subscription]:
        """Open a subscription to the alerts of the tenants `audience` accepts: the snapshot (of
        `tenant_id`'s alerts, with those of unknown tenant when `admin`) first, then live
        changes; the snapshot provider's error propagates from entering.
        Registered before the snapshot is read, so no change committed meanwhile is missed (it
        may arrive twice: summaries are whole states)."""
        sub = Subscription(
            audience=audience, queue_size=self._queue_size, keepalive_s=self._keepalive_s
        )
        self._subscribers.add(sub)
        try:
            snapshot = await self._snapshot(tenant_id, admin)
            sub.set_snapshot([summary for tenant, summary in snapshot if audience(tenant)])
            yield sub
        finally:
            self._subscribers.discard(sub)
            sub.closed = True

    def close(self) -> None:
        """End every open subscription (at shutdown, so streams do not hold the server open)."""
        for sub in list(self._subscribers):
            self._subscribers.discard(sub)
            sub.close()

    def _drop(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        sub.close()
        log.warning("live_feed_subscriber_dropped", queue_size=self._queue_size)
