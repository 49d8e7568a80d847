"""Escalation timers: alerts whose `next_wake_at` has passed get their due levels queued.

The timers are rows, not sleeps: a restart, or another instance, picks up exactly where the last
one stopped. Each alert is advanced in its own transaction under its row lock and version, and
the idempotency keys make a level queued twice land once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial

import structlog
from sqlalchemy import func, select

from services.notifier.adapters.store import Tx
from services.notifier.adapters.tables import alerts
from services.notifier.domain import next_wake
from services.notifier.handlers import Notifier, advance
from services.notifier.records import AlertRow

log = structlog.get_logger(__name__)
MIN_SLEEP_S = 0.02  # never spin, even when the clock says something is overdue


class Scheduler:
    """Wakes at the earliest timer (or on `notify()`, or every `poll_s`) and advances due alerts."""

    def __init__(self, notifier: Notifier, *, poll_s: float, batch: int = 200) -> None:
        self._n = notifier
        self._poll_s = poll_s
        self._batch = batch
        self._wake = asyncio.Event()
        self._planned: datetime | None = None

    def notify(self, rows: Iterable[AlertRow] = ()) -> None:
        """Alerts changed: look now if one of their timers is due before the planned look."""
        wakes = [w for w in (next_wake(r.snapshot) for r in rows) if w is not None]
        if wakes and (self._planned is None or min(wakes) < self._planned):
            self._wake.set()

    async def run(self) -> None:
        """Advance due alerts until cancelled."""
        while True:
            try:
                while await self.tick() >= self._batch:
                    pass
                await self._sleep()
            except Exception as exc:  # the database is away: keep trying, never die
                log.error("scheduler_iteration_failed", error=type(exc).__name__)
                await asyncio.sleep(self._poll_s)

    async def tick(self) -> int:
        """Advance every alert due now; return how many were due."""
        if not self._n.consent.caught_up:
            return 0  # patient targets depend on consent: wait until it is known
        now = self._n.store.clock()
        self._planned = now + timedelta(seconds=self._poll_s)  # while ticking: only earlier wakes
        async with self._n.store.reading() as conn:
            due = (
                (
                    await conn.execute(
                        select(alerts.c.alert_id)
                        .where(alerts.c.next_wake_at <= now)
                        .order_by(alerts.c.next_wake_at)
                        .limit(self._batch)
                    )
                )
                .scalars()
                .all()
            )
        for alert_id in due:
            token = self._n.adoption_token()
            row = await self._n.store.atomically(
                partial(self._advance, alert_id=alert_id, token=token)
            )
            if row is not None:
                self._n.committed([row], token)
        return len(due)

    async def _advance(self, tx: Tx, *, alert_id: str, token: str | None) -> AlertRow | None:
        self._n.adopting(tx, token)
        row = await tx.alert(alert_id, lock=True)
        if row is None:
            return None
        wake = next_wake(row.snapshot)
        if wake is None or wake > tx.now:
            return None  # someone else advanced it meanwhile
        log.info("escalation_timer_fired", alert_id=alert_id, level=row.snapshot.level_reached)
        return await advance(tx, row, self._n)

    async def _sleep(self) -> None:
        timeout = self._poll_s
        async with self._n.store.reading() as conn:
            earliest = (await conn.execute(select(func.min(alerts.c.next_wake_at)))).scalar()
        now = self._n.store.clock()
        if earliest is not None:
            timeout = min(timeout, (earliest - now).total_seconds())
        timeout = max(timeout, MIN_SLEEP_S)
        self._planned = now + timedelta(seconds=timeout)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()
