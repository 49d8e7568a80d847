"""Rate-limited pulls waiting out the vendor's Retry-After: a SQL store (SQLite or PostgreSQL)
and the relay that puts them back on vendor-notifications.v1 once the wait is over.

A row holds the notification (vendor user id, kind, date or interval: no patient data) and the
time before which the vendor must not be asked again. Rows are keyed by the notification's
deterministic id, so the same notice arriving again while deferred is one row, not two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ingest.adapters.tables import deferred_pulls as t
from shared.events import VendorNotification
from shared.kafka import KafkaEventPublisher, PublishFailedError
from shared.topics import VENDOR_NOTIFICATIONS

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DeferredPull:
    """A notification to put back on the topic once `not_before` has passed."""

    notification: VendorNotification
    not_before: datetime


class SqlDeferredPullStore:
    """Deferred pulls by notification id, with the per-user 'asked to wait until' time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def defer(
        self, notification: VendorNotification, *, not_before: datetime, now: datetime
    ) -> None:
        """Keep a notification until `not_before` (a later time wins if it is already kept)."""
        key = t.c.notification_id == notification.notification_id
        while True:  # the row may be inserted or requeued by someone else between our statements
            async with self._engine.begin() as conn:
                current = (await conn.execute(select(t.c.not_before).where(key))).scalar()
                if current is not None and current >= not_before:
                    return
                if current is not None:
                    moved = await conn.execute(
                        update(t)
                        .where(key, t.c.not_before == current)
                        .values(not_before=not_before)
                    )
                    if moved.rowcount:
                        return
                    continue
                try:
                    await conn.execute(
                        insert(t).values(
                            notification_id=notification.notification_id,
                            vendor=notification.vendor,
                            vendor_user=notification.vendor_user,
                            notification=notification.model_dump_json(),
                            not_before=not_before,
                            deferred_at=now,
                        )
                    )
                    return
                except IntegrityError:
                    await conn.rollback()

    async def deferred_until(
        self, vendor: str, vendor_user: str, *, now: datetime
    ) -> datetime | None:
        """The time a vendor asked us to leave this user alone until, if it is still ahead."""
        async with self._engine.connect() as conn:
            until: datetime | None = (
                await conn.execute(
                    select(func.max(t.c.not_before)).where(
                        t.c.vendor == vendor, t.c.vendor_user == vendor_user
                    )
                )
            ).scalar()
        return until if until is not None and until > now else None

    async def due(self, *, now: datetime, limit: int = 100) -> list[DeferredPull]:
        """The deferred pulls whose wait is over, oldest deadline first."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.c.notification, t.c.not_before)
                    .where(t.c.not_before <= now)
                    .order_by(t.c.not_before)
                    .limit(limit)
                )
            ).all()
        return [
            DeferredPull(VendorNotification.model_validate_json(r.notification), r.not_before)
            for r in rows
        ]

    async def requeue_due(
        self,
        *,
        now: datetime,
        limit: int,
        publish: Callable[[list[VendorNotification]], Awaitable[None]],
    ) -> int:
        """Hand the due pulls to `publish` and forget them once it returned, unless one was
        deferred again meanwhile. On PostgreSQL the rows stay locked until then and other
        replicas skip them (FOR UPDATE SKIP LOCKED), so a due pull is requeued once."""
        query = (
            select(t.c.notification_id, t.c.notification, t.c.not_before)
            .where(t.c.not_before <= now)
            .order_by(t.c.not_before)
            .limit(limit)
        )
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            await publish([VendorNotification.model_validate_json(r.notification) for r in rows])
            for row in rows:
                await conn.execute(
                    delete(t).where(
                        t.c.notification_id == row.notification_id,
                        t.c.not_before == row.not_before,
                    )
                )
        return len(rows)


class DeferredPullRelay:
    """Puts due deferred pulls back on vendor-notifications.v1 (acks=all), then forgets them.

    It polls the store, so it also resumes what a previous process or another replica deferred.
    A crash between the publish and the delete publishes the pull twice: pulls are idempotent.
    """

    def __init__(
        self,
        *,
        store: SqlDeferredPullStore,
        publisher: KafkaEventPublisher,
        poll_s: float = 1.0,
        batch: int = 100,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._poll_s = poll_s
        self._batch = batch
        self.ready = False

    async def run(self) -> None:
        """Relay until cancelled; a failed round (broker or database down) is retried next poll."""
        while True:
            try:
                while await self.relay_due() == self._batch:
                    pass
                self.ready = True
            except (PublishFailedError, SQLAlchemyError, OSError) as exc:
                self.ready = False
                log.warning("deferred_pull_relay_failed", error=type(exc).__name__)
            await asyncio.sleep(self._poll_s)

    async def relay_due(self, *, now: datetime | None = None) -> int:
        """Publish the pulls whose wait is over; return how many went back on the topic."""
        if not self._publisher.ready:
            return 0

        async def publish(notifications: list[VendorNotification]) -> None:
            await self._publisher.publish_many(VENDOR_NOTIFICATIONS, notifications)

        count = await self._store.requeue_due(
            now=now or datetime.now(UTC), limit=self._batch, publish=publish
        )
        if count:
            log.info("deferred_pulls_requeued", count=count)
        return count
