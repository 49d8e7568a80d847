"""The delivery worker: claims due rows, sends them concurrently, records each outcome.

Woken by `notify()` right after a commit that queued something (so a page leaves within
milliseconds), and by its own clock for retries and the safety-net poll. Slack sends are paced per
channel by a token bucket; an edit or thread reply waits until the message it refers to is sent. On stop, sends in flight get a grace period to finish; unfinished
claims are handed back so the next start sends them (never a second time if they completed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from services.notifier.adapters import deliveries
from services.notifier.adapters.group_commit import GroupCommit
from services.notifier.adapters.outcomes import Failure, Outcomes
from services.notifier.adapters.prepared import Drop, Later, as_delivery
from services.notifier.adapters.rate_limit import ChannelPacer, KeyedLocks
from services.notifier.adapters.store import Store, Tx, read_alerts
from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from services.notifier.ports import Channel, ChannelSender, Delivery
from services.notifier.records import AlertRow, DeliveryRow
from shared.consent_view import ConsentState
from shared.events import Purpose

log = structlog.get_logger(__name__)
MIN_SLEEP_S = 0.01  # never spin, even when the clock says something is overdue
REF_WAIT = timedelta(milliseconds=100)  # an update waits this long for its original to be sent
MAX_INLINE_PACING_S = 2.0


class Dispatcher:
    """Sends what the database says is due; run() is a lifespan-owned component."""

    def __init__(
        self,
        *,
        store: Store,
        senders: Mapping[Channel, ChannelSender],
        outcomes: Outcomes,
        pacer: ChannelPacer,
        consent: ConsentState,
        render: Callable[[AlertRow], dict[str, Any]],
        concurrency: int,
        claim_ttl_s: float,
        poll_s: float,
        grace_s: float = 5.0,
    ) -> None:
        self._store = store
        self._senders = senders
        self._outcomes = outcomes
        self._pacer = pacer
        self._consent = consent
        self._render = render
        self._concurrency = concurrency
        self._claim_ttl = timedelta(seconds=claim_ttl_s)
        self._poll_s = poll_s
        self._grace_s = grace_s
        self._wake = asyncio.Event()
        self._per_message = KeyedLocks()
        self._writes = GroupCommit(store)
        self._saturated = False
        self._adopted: list[tuple[str, dict[str, AlertRow]]] = []
        # Adopted rows beyond the free send slots, already claimed by us, started as slots free.
        self._backlog: collections.deque[tuple[DeliveryRow, AlertRow | None, datetime]] = (
            collections.deque()
        )
        self._inflight: dict[asyncio.Task[None], DeliveryRow] = {}
        self.after_dead_letter: Callable[[], None] = lambda: None

    def notify(self) -> None:
        """Something was queued (or became due): look now."""
        self._wake.set()

    def adopt(self, token: str, alerts: list[AlertRow]) -> None:
        """Take over the sends a committed transaction wrote already claimed under `token`."""
        self._adopted.append((token, {a.alert_id: a for a in alerts}))
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until cancelled; then let sends in flight finish or hand them back."""
        writer = asyncio.create_task(self._writes.run(), name="delivery-outcomes")
        try:
            while True:
                try:
                    await self._fill()
                    await self._sleep()
                except Exception as exc:  # the database is away: keep trying, never die
                    log.error("dispatcher_iteration_failed", error=type(exc).__name__)
                    await asyncio.sleep(self._poll_s)
        finally:
            await self._stop()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def drain_once(self) -> int:
        """Claim what is due now and wait for each claimed send's outcome; return how many."""
        before = set(self._inflight)
        await self._fill()
        claimed = [t for t in self._inflight if t not in before]
        await asyncio.gather(*claimed)
        return len(claimed)

    async def _sleep(self) -> None:
        timeout = self._poll_s
        if len(self._inflight) < self._concurrency:
            async with self._store.reading() as conn:
                due = await deliveries.next_due(conn)
            if due is not None:
                timeout = min(timeout, (due - self._store.clock()).total_seconds())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, MIN_SLEEP_S)):
                await self._wake.wait()
        self._wake.clear()

    async def _fill(self) -> None:
        """Start adopted sends, then claim as many due rows as there are free send slots.

        Adopted rows count against the slots too (a poll batch can adopt hundreds at once): the
        ones beyond them wait in memory, still claimed, and start as sends finish.
        """
        while self._adopted:
            token, alerts = self._adopted.pop(0)
            async with self._store.reading() as conn:
                rows = await deliveries.adopted(conn, token)
                missing = {r.alert_id for r in rows if r.alert_id not in alerts}
                alerts |= await read_alerts(conn, missing)
            adopted_at = self._store.clock()
            self._backlog.extend((row, alerts.get(row.alert_id), adopted_at) for row in rows)
        free = self._concurrency - len(self._inflight)
        # A row that waited half its claim is left to expire and be claimed afresh: never send
        # under a claim that may lapse mid-send and be taken over.
        stale = self._store.clock() - self._claim_ttl / 2
        while self._backlog and free > 0:
            row, alert, adopted_at = self._backlog.popleft()
            if adopted_at >= stale:
                self._start(row, alert)
                free -= 1
        if self._backlog:
            self._saturated = True  # a finishing send wakes the loop to start the next
            return
        if free <= 0:
            return
        async with self._store.reading() as conn:  # nothing due: no write transaction at all
            ids = await deliveries.due_ids(conn, now=self._store.clock(), limit=free)
        if not ids:
            return
        self._saturated = len(ids) == free
        rows, alerts = await self._store.atomically(partial(self._claim, ids=ids))
        for row in rows:
            self._start(row, alerts.get(row.alert_id))

    def _start(self, row: DeliveryRow, alert: AlertRow | None) -> None:
        task = asyncio.create_task(self._deliver(row, alert), name=f"deliver-{row.id}")
        self._inflight[task] = row
        task.add_done_callback(self._done)

    async def _claim(
        self, tx: Tx, *, ids: list[int]
    ) -> tuple[list[DeliveryRow], dict[str, AlertRow]]:
        rows = await deliveries.claim(tx, ids, until=tx.now + self._claim_ttl)
        rendered = {r.alert_id for r in rows if r.payload.get("render") == "alert"}
        return rows, await read_alerts(tx.conn, rendered)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if self._saturated:
            self._wake.set()  # a slot is free and more may be due

    async def _deliver(self, row: DeliveryRow, alert: AlertRow | None) -> None:
        """Send one claimed row and record what happened; never raises."""
        with structlog.contextvars.bound_contextvars(delivery_id=row.id, alert_id=row.alert_id):
            try:
                await self._attempt(row, alert)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # our bug or the database: retried like a transient failure
                # No traceback text: an exception's message can hold an input (a pydantic error
                # on a stored contact shows the phone number). The type and code line only.
                frames = traceback.extract_tb(exc.__traceback__)
                where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
                log.error("delivery_crashed", error=type(exc).__name__, where=where)
                failure = Failure(permanent=False, code=f"internal:{type(exc).__name__}")
                with contextlib.suppress(Exception):  # else the claim expires and is retried
                    await self._writes.submit(lambda tx: self._outcomes.failed(tx, row, failure))
                self._wake.set()

    async def _attempt(self, row: DeliveryRow, alert: AlertRow | None) -> None:
        if row.ref_id is None:
            await self._prepare_and_send(row, alert)
            return
        # Edits and replies of one message go one at a time, in claim (id) order; each renders
        # the alert as it was when claimed, so the last edit to arrive shows the latest state.
        async with self._per_message.hold(row.ref_id):
            await self._prepare_and_send(row, alert)

    async def _prepare_and_send(self, row: DeliveryRow, alert: AlertRow | None) -> None:
        prepared = await self._prepare(row, alert)
        if isinstance(prepared, Later):
            await self._writes.submit(lambda tx: self._outcomes.later(tx, row, prepared.at))
            self._wake.set()  # so the next look is planned with this row's new time
            return
        if isinstance(prepared, Drop):
            await self._writes.submit(lambda tx: self._outcomes.cancelled(tx, row, prepared.reason))
            log.info("delivery_dropped", reason=prepared.reason)
            return
        if row.channel is Channel.SLACK:
            wait = await self._pacer.token(row.recipient, max_wait=MAX_INLINE_PACING_S)
            if wait > 0:
                at = self._store.clock() + timedelta(seconds=wait)
                await self._writes.submit(lambda tx: self._outcomes.later(tx, row, at))
                self._wake.set()
                return
        await self._send(row, prepared)

    async def _send(self, row: DeliveryRow, delivery: Delivery) -> None:
        sender = self._senders.get(row.channel)
        metrics = self._outcomes.metrics
        started = time.perf_counter()
        try:
            if sender is None:
                raise PermanentDeliveryError(
                    "channel not configured", code="channel_not_configured"
                )
            receipt = await sender.send(delivery)
        except PermanentDeliveryError as exc:
            failure = Failure(True, exc.code or "refused", disable_recipient=exc.disable_recipient)
        except TransientDeliveryError as exc:
            failure = Failure(False, "transient", retry_after_s=exc.retry_after_s)
            if exc.retry_after_s and row.channel is Channel.SLACK:
                self._pacer.pause(row.recipient, exc.retry_after_s)
        else:
            metrics.latency.labels(row.channel.value).observe(receipt.latency_s)
            metrics.sent.labels(row.channel.value).inc()
            await self._writes.submit_bulk(self._outcomes.sent_many, (row, receipt))
            log.info(
                "delivery_sent", channel=row.channel.value, role=row.role, kind=row.recipient_kind
            )
            return
        metrics.latency.labels(row.channel.value).observe(time.perf_counter() - started)
        what = await self._writes.submit(lambda tx: self._outcomes.failed(tx, row, failure))
        self._wake.set()  # a retry time, a fallback or an ops notice was just queued
        if what == "dead":
            self.after_dead_letter()  # the outbox relay publishes it on deadletter.v1
        log.warning("delivery_failed", channel=row.channel.value, code=failure.code, then=what)

    async def _prepare(self, row: DeliveryRow, alert: AlertRow | None) -> Delivery | Later | Drop:
        """Build the provider-neutral message, or say why not now / never."""
        if row.recipient_kind == "patient" and not self._consent.caught_up:
            return Later(self._store.clock() + timedelta(seconds=0.5))
        if row.recipient_kind == "patient" and not self._consent.allows(
            row.patient_id, Purpose.NOTIFICATIONS
        ):
            return Drop("notifications consent withdrawn")
        ref = None
        if row.ref_id is not None:
            async with self._store.reading() as conn:
                status, ref, due = (await deliveries.statuses(conn, [row.ref_id])).get(
                    row.ref_id, ("gone", None, self._store.clock())
                )
            if status in ("pending", "sending"):
                return Later(max(self._store.clock() + REF_WAIT, due))
            if status != "sent" or ref is None:
                return Drop("the message it refers to was not sent")
        payload = dict(row.payload)
        if payload.get("render") == "alert":
            if alert is None:
                return Drop("alert erased")
            payload = self._render(alert)
        return as_delivery(row, payload, ref)

    async def _stop(self) -> None:
        """Give sends in flight a grace period, then cancel the rest and hand their claims back."""
        adopted: list[tuple[str, int | None]] = [(token, None) for token, _ in self._adopted]
        adopted += [(row.claim_token or "", row.id) for row, _, _ in self._backlog]
        self._adopted.clear()
        self._backlog.clear()
        if adopted:
            async with self._store.transaction() as tx:
                await deliveries.release(tx, adopted)
        tasks = list(self._inflight)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._grace_s)
        leftovers = [(self._inflight[t].claim_token or "", self._inflight[t].id) for t in pending]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if leftovers:
            async with self._store.transaction() as tx:
                await deliveries.release(tx, leftovers)
