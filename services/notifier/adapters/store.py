"""The notifier database: one transaction per unit of work, alerts with optimistic versions.

Every change an event, a timer, an ack or a send causes is written in one transaction (`Store.
atomically`), so a crash leaves either all of it or none. Alerts carry a version: a write that lost
a race raises StaleAlertError and `atomically` runs the unit of work again on fresh rows. SQLite
writers are serialised in-process (one file, one writer at a time) so they never meet "database
is locked"; PostgreSQL runs them concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier.adapters.tables import alerts, deliveries, events, timeline
from services.notifier.domain import alert_from_json
from services.notifier.errors import NotifierError
from services.notifier.records import AlertRow
from shared.events import AlertEvent

T = TypeVar("T")
MAX_RETRIES = 8
ALERT_LIST_LIMIT = 500  # rows an alert list or a dashboard snapshot shows at most


class StaleAlertError(NotifierError):
    """The alert changed since it was read; the unit of work must run again."""


def row_to_alert(row: Any) -> AlertRow:
    """Build an AlertRow from a notifier_alerts row."""
    return AlertRow(
        snapshot=alert_from_json(row.snapshot),
        last_event=AlertEvent.model_validate_json(row.last_event),
        tenant_id=row.tenant_id,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        acknowledged_via=row.acknowledged_via,
        slack_ref=row.slack_ref,
        version=row.version,
    )


class Tx:
    """One open transaction and the time it works at; alerts read or written in it are cached,
    and timeline entries are written together just before the commit (fewer round trips)."""

    def __init__(self, conn: AsyncConnection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self._alerts: dict[str, AlertRow | None] = {}
        self._new_alerts: dict[str, dict[str, Any]] = {}
        self._queued: list[dict[str, Any]] = []
        self._notes: list[dict[str, Any]] = []
        self.contacts: dict[str, Any] = {}  # patient id -> StoredContact | None, read once
        # (channel, address) pairs -> which of them are disabled, read once per transaction
        self.disabled: dict[tuple[Any, ...], Any] = {}
        # (claim token, claimed until): deliveries due at once are written already claimed for
        # this instance's dispatcher, which is handed the token after the commit.
        self.adopt: tuple[str, datetime] | None = None

    async def preload(self, alert_ids: Iterable[str]) -> None:
        """Read many alerts at once into this transaction's cache."""
        wanted = set(alert_ids) - set(self._alerts)
        if wanted:
            found = await read_alerts(self.conn, wanted)
            self._alerts |= {a: found.get(a) for a in wanted}

    def queue(self, rows: list[dict[str, Any]]) -> None:
        """Buffer delivery rows; written at the next flush, a key already queued is skipped."""
        self._queued += rows

    async def flush(self) -> None:
        """Write buffered new alerts, deliveries and timeline entries, each as one statement run
        for many rows (Store.transaction calls it before commit; readers of them call it first)."""
        if self._new_alerts:
            rows, self._new_alerts = list(self._new_alerts.values()), {}
            await self.conn.execute(insert(alerts), rows)
        if self._queued:
            rows, self._queued = [self._adopted(r) for r in self._queued], []
            dialect_insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
            stmt = dialect_insert(deliveries).on_conflict_do_nothing(
                index_elements=[deliveries.c.idempotency_key]
            )
            await self.conn.execute(stmt, rows)
        if self._notes:
            notes, self._notes = self._notes, []
            await self.conn.execute(insert(timeline), notes)

    def _adopted(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.adopt is None or row["ref_id"] is not None or row["next_attempt_at"] > self.now:
            return row
        token, until = self.adopt
        return row | {"status": "sending", "claim_token": token, "claimed_until": until}

    async def unseen(self, event_ids: Iterable[str]) -> set[str]:
        """Return the ids among `event_ids` not handled yet."""
        ids = set(event_ids)
        if not ids:
            return ids
        rows = await self.conn.execute(select(events.c.event_id).where(events.c.event_id.in_(ids)))
        return ids - {r.event_id for r in rows}

    async def mark_handled(self, handled: list[tuple[str, str]]) -> None:
        """Record (event id, alert id) pairs as handled."""
        if handled:
            rows = [{"event_id": e, "alert_id": a, "processed_at": self.now} for e, a in handled]
            await self.conn.execute(insert(events), rows)

    async def alert(self, alert_id: str, *, lock: bool = False) -> AlertRow | None:
        """Read an alert (with a row lock on PostgreSQL when `lock`)."""
        if not lock and alert_id in self._alerts:
            return self._alerts[alert_id]
        query = select(alerts).where(alerts.c.alert_id == alert_id)
        row = (await self.conn.execute(query.with_for_update() if lock else query)).first()
        self._alerts[alert_id] = None if row is None else row_to_alert(row)
        return self._alerts[alert_id]

    async def open_alerts_of(self, patient_id: str) -> list[AlertRow]:
        """Alerts of a patient that are open or acknowledged."""
        await self.flush()
        rows = await self.conn.execute(
            select(alerts).where(
                alerts.c.patient_id == patient_id,
                alerts.c.status.in_(("open", "acknowledged")),
            )
        )
        return [row_to_alert(r) for r in rows]

    async def save_alert(self, alert: AlertRow, *, new: bool = False) -> AlertRow:
        """Insert, or update when nobody changed it meanwhile (else StaleAlertError)."""
        if new or alert.alert_id in self._new_alerts:  # not written yet: one INSERT at flush
            saved = replace(alert, updated_at=self.now, version=0)
            self._alerts[alert.alert_id] = saved
            self._new_alerts[alert.alert_id] = saved.values()
            return saved
        saved = replace(alert, updated_at=self.now, version=alert.version + 1)
        self._alerts[alert.alert_id] = saved
        result = await self.conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == alert.alert_id, alerts.c.version == alert.version)
            .values({k: v for k, v in saved.values().items() if k != "alert_id"})
        )
        if result.rowcount != 1:
            raise StaleAlertError(alert.alert_id)
        return saved

    async def set_slack_ref(self, alert_id: str, ref: str) -> None:
        """Remember the first Slack message of an alert."""
        await self.flush()
        await self.conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == alert_id, alerts.c.slack_ref.is_(None))
            .values(slack_ref=ref)
        )

    async def set_slack_refs(self, refs: dict[str, str]) -> None:
        """Remember the first Slack message of many alerts (alert id -> ref): one UPDATE run for
        every alert (executemany: one statement shape, compiled once, whatever the count)."""
        if not refs:
            return
        await self.flush()
        await self.conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == bindparam("b_alert"), alerts.c.slack_ref.is_(None))
            .values(slack_ref=bindparam("b_ref")),
            [{"b_alert": alert_id, "b_ref": ref} for alert_id, ref in refs.items()],
        )

    async def note(
        self,
        alert_id: str,
        kind: str,
        detail: str,
        *,
        actor: str | None = None,
        channel: str | None = None,
    ) -> None:
        """Add a timeline entry (no contact data, no values: ids, channels, codes)."""
        self._notes.append(
            {
                "alert_id": alert_id,
                "at": self.now,
                "kind": kind,
                "actor": actor,
                "channel": channel,
                "detail": detail[:500],
            }
        )


class Store:
    """The engine, the SQLite writer lock, and transactions that retry lost races."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock
        self.sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """Open a write transaction (serialised on SQLite); commit on success."""
        async with contextlib.AsyncExitStack() as stack:
            if self.sqlite:
                await stack.enter_async_context(self._write_lock)
            conn = await stack.enter_async_context(self.engine.begin())
            tx = Tx(conn, self.clock())
            yield tx
            await tx.flush()

    async def atomically(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `work` in a transaction, again from scratch when it lost a race on an alert."""
        for attempt in range(MAX_RETRIES):
            try:
                async with self.transaction() as tx:
                    return await work(tx)
            except StaleAlertError:
                if attempt == MAX_RETRIES - 1:
                    raise
                await asyncio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """Open a read-only connection."""
        async with self.engine.connect() as conn:
            yield conn


async def read_alert(conn: AsyncConnection, alert_id: str) -> AlertRow | None:
    """One alert, outside any write transaction."""
    row = (await conn.execute(select(alerts).where(alerts.c.alert_id == alert_id))).first()
    return None if row is None else row_to_alert(row)


async def read_alerts(conn: AsyncConnection, alert_ids: set[str]) -> dict[str, AlertRow]:
    """Some alerts by id."""
    if not alert_ids:
        return {}
    rows = await conn.execute(select(alerts).where(alerts.c.alert_id.in_(alert_ids)))
    return {r.alert_id: row_to_alert(r) for r in rows}


async def list_alerts(
    conn: AsyncConnection,
    *,
    open_only: bool,
    tenant_id: str | None,
    admin: bool = False,
    limit: int = ALERT_LIST_LIMIT,
) -> list[AlertRow]:
    """Alerts a tenant may see, newest first; open ones (open or acknowledged) when `open_only`.

    The tenant filter runs in the query, before the limit, so other tenants' alerts never take
    a tenant's rows; `admin` also sees alerts of unknown tenant; tenant None: every alert."""
    query = select(alerts).order_by(alerts.c.opened_at.desc()).limit(limit)
    if open_only:
        query = query.where(alerts.c.status.in_(("open", "acknowledged")))
    if tenant_id is not None:
        own = alerts.c.tenant_id == tenant_id
        query = query.where(or_(alerts.c.tenant_id.is_(None), own) if admin else own)
    return [row_to_alert(r) for r in await conn.execute(query)]


async def alerts_of_patient(conn: AsyncConnection, patient_id: str) -> list[AlertRow]:
    """Every alert of a patient, oldest first (export)."""
    query = select(alerts).where(alerts.c.patient_id == patient_id).order_by(alerts.c.opened_at)
    return [row_to_alert(r) for r in await conn.execute(query)]


async def timeline_of(conn: AsyncConnection, alert_id: str) -> list[dict[str, Any]]:
    """An alert's timeline, in order."""
    rows = await conn.execute(
        select(timeline).where(timeline.c.alert_id == alert_id).order_by(timeline.c.id)
    )
    return [
        {
            "at": r.at.isoformat(),
            "kind": r.kind,
            "actor": r.actor,
            "channel": r.channel,
            "detail": r.detail,
        }
        for r in rows
    ]


async def delete_patient_alerts(tx: Tx, patient_id: str) -> int:
    """Delete a patient's alerts with their deliveries and timelines; return alerts deleted."""
    ids = select(alerts.c.alert_id).where(alerts.c.patient_id == patient_id).scalar_subquery()
    await tx.conn.execute(delete(timeline).where(timeline.c.alert_id.in_(ids)))
    await tx.conn.execute(delete(deliveries).where(deliveries.c.patient_id == patient_id))
    result = await tx.conn.execute(delete(alerts).where(alerts.c.patient_id == patient_id))
    return int(result.rowcount or 0)
