"""The notifier database on SQLite and PostgreSQL: migrations, exclusive claims, abandoned claims,
idempotency keys, lost races on an alert."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import inspect

from services.notifier.adapters import deliveries
from services.notifier.adapters.group_commit import GroupCommit
from services.notifier.adapters.store import StaleAlertError, Tx, list_alerts, timeline_of
from services.notifier.app import MIGRATIONS, open_summaries
from services.notifier.handlers import Notifier
from services.notifier.ports import Channel
from services.notifier.records import NewDelivery
from shared.db import migrate
from tests.services.notifier.support import (
    Clock,
    alert_event,
    alert_row,
    feed,
    make_notifier,
    rows,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def n(database: dict[str, Any], clock: Clock) -> Notifier:
    return await make_notifier(
        database["database_url"], clock, schema=database.get("database_schema")
    )


async def claim(tx: Tx, *, ids: list[int]) -> list[Any]:
    return await deliveries.claim(tx, ids, until=tx.now + timedelta(seconds=60))


def new(i: int, alert_id: str = "a-1") -> NewDelivery:
    return NewDelivery(
        key=f"key-{i}",
        alert_id=alert_id,
        patient_id="pt-1",
        event="red.level1",
        role="post",
        channel=Channel.SMS,
        recipient=f"+55119000000{i:02d}",
        recipient_kind="agent",
        recipient_label=f"agent-{i}",
        payload={"text": "hi"},
    )


async def test_migrations_use_their_own_version_table_and_rerun_cleanly(n: Notifier) -> None:
    await migrate(n.store.engine, MIGRATIONS)
    async with n.store.reading() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    assert {"alembic_version_notifier", "notifier_alerts", "notifier_deliveries"} <= set(names)


async def test_the_same_send_is_queued_once(n: Notifier) -> None:
    async with n.store.transaction() as tx:
        await deliveries.queue(tx, [new(1), new(1), new(2)])
    async with n.store.transaction() as tx:
        await deliveries.queue(tx, [new(1)])
    async with n.store.reading() as conn:
        assert [r.key for r in await deliveries.of_alert(conn, "a-1")] == ["key-1", "key-2"]


async def test_two_dispatchers_never_claim_the_same_row(
    database: dict[str, Any], n: Notifier, clock: Clock
) -> None:
    async with n.store.transaction() as tx:
        await deliveries.queue(tx, [new(i) for i in range(60)])
    other = await make_notifier(
        database["database_url"], clock, schema=database.get("database_schema")
    )

    async def drain(notifier: Notifier) -> list[int]:
        claimed: list[int] = []
        while True:
            async with notifier.store.reading() as conn:
                ids = await deliveries.due_ids(conn, now=clock.now, limit=4)
            if not ids:
                return claimed
            rows = await notifier.store.atomically(partial(claim, ids=ids))
            claimed += [r.id for r in rows]

    claims = await asyncio.gather(drain(n), drain(other), drain(n), drain(other))
    everything = [row_id for claimed in claims for row_id in claimed]
    assert len(everything) == 60 and len(set(everything)) == 60
    await other.store.engine.dispose()


async def test_an_abandoned_claim_is_claimed_again_after_its_deadline(
    n: Notifier, clock: Clock
) -> None:
    async with n.store.transaction() as tx:
        await deliveries.queue(tx, [new(1)])

    async def due() -> list[int]:
        async with n.store.reading() as conn:
            return await deliveries.due_ids(conn, now=clock.now, limit=10)

    (first,) = await n.store.atomically(partial(claim, ids=await due()))
    assert await due() == []  # still held
    assert await n.store.atomically(partial(claim, ids=[first.id])) == []
    clock.advance(61)  # the instance that held it died
    (again,) = await n.store.atomically(partial(claim, ids=await due()))
    assert again.id == first.id and again.claim_token != first.claim_token
    async with n.store.transaction() as tx:  # the late first holder cannot record anything
        assert not await deliveries.finish(tx, first, status="sent")
        assert await deliveries.finish(tx, again, status="sent")


async def test_a_write_that_lost_a_race_on_an_alert_runs_again(n: Notifier) -> None:
    await feed(n, alert_event())
    stale = await alert_row(n)
    async with n.store.transaction() as tx:
        await tx.save_alert(replace(stale, acknowledged_via="api"))
    with pytest.raises(StaleAlertError):
        async with n.store.transaction() as tx:
            await tx.save_alert(stale)
    runs: list[int] = []

    async def work(tx: Tx) -> None:
        runs.append(1)
        row = stale if len(runs) == 1 else await tx.alert("a-1")
        assert row is not None
        await tx.save_alert(row)

    await n.store.atomically(work)
    assert len(runs) == 2


async def test_sends_recorded_together_skip_a_row_another_instance_took_over(
    n: Notifier, clock: Clock
) -> None:
    async with n.store.transaction() as tx:
        await deliveries.queue(tx, [new(i) for i in range(3)])
    async with n.store.reading() as conn:
        ids = await deliveries.due_ids(conn, now=clock.now, limit=10)
    first = await n.store.atomically(partial(claim, ids=ids))
    clock.advance(61)  # this instance stalled; another one claims the middle row again
    (taken,) = await n.store.atomically(partial(claim, ids=[first[1].id]))
    async with n.store.transaction() as tx:
        done = await deliveries.finish_sent(tx, [(r, f"ref-{r.id}") for r in first])
    assert done == {first[0].id, first[2].id}
    after = {r.id: r for r in await rows(n)}
    for row in (first[0], first[2]):
        assert after[row.id].status == "sent" and after[row.id].provider_ref == f"ref-{row.id}"
        assert after[row.id].attempts == 1 and after[row.id].claim_token is None
    assert after[taken.id].status == "sending" and after[taken.id].claim_token == taken.claim_token


async def test_grouped_outcomes_commit_together_and_a_failing_one_fails_alone(
    n: Notifier,
) -> None:
    writes = GroupCommit(n.store)
    calls: list[list[str]] = []

    async def record(tx: Tx, items: list[str]) -> None:
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("bad unit")
        await tx.note("a-1", "probe", ",".join(items))

    writer = asyncio.create_task(writes.run())
    await asyncio.sleep(0)  # the writer is running: units queue up for one batch
    results = await asyncio.gather(
        *(writes.submit_bulk(record, item) for item in ("one", "bad", "two")),
        return_exceptions=True,
    )
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    assert calls[0] == ["one", "bad", "two"]  # one call for the whole batch, then each alone
    assert sorted(map(tuple, calls[1:])) == [("bad",), ("one",), ("two",)]
    assert results[0] is None and results[2] is None and isinstance(results[1], RuntimeError)
    async with n.store.reading() as conn:
        details = [e["detail"] for e in await timeline_of(conn, "a-1")]
    assert details == ["one", "two"]


async def _alerts_of_tenants(n: Notifier, tenants: list[str | None]) -> None:
    """Copies of one alert, one per entry of `tenants`, each opened a minute after the last."""
    await feed(n, alert_event())
    base = await alert_row(n)
    async with n.store.transaction() as tx:
        for i, tenant in enumerate(tenants):
            snapshot = base.snapshot.model_copy(update={"alert_id": f"x-{i}"})
            opened = base.opened_at + timedelta(minutes=i + 1)
            await tx.save_alert(
                replace(base, snapshot=snapshot, tenant_id=tenant, opened_at=opened), new=True
            )


async def test_other_tenants_alerts_never_take_the_rows_a_tenant_may_see(n: Notifier) -> None:
    # a-1 (unknown tenant: no consent recorded) is the oldest; newer ones overfill the limit of 3
    tenants = ["tenant-a", "tenant-a", "tenant-b", None, "tenant-b", None, "tenant-b"]
    await _alerts_of_tenants(n, tenants)
    async with n.store.reading() as conn:
        own = await list_alerts(conn, open_only=True, tenant_id="tenant-a", limit=3)
        as_admin = await list_alerts(
            conn, open_only=False, tenant_id="tenant-a", admin=True, limit=3
        )
    assert [r.alert_id for r in own] == ["x-1", "x-0"]
    assert [(r.alert_id, r.tenant_id) for r in as_admin] == [
        ("x-5", None),
        ("x-3", None),
        ("x-1", "tenant-a"),
    ]
    snapshot = await open_summaries(n.store, "tenant-a", False, limit=3)
    assert [(tenant, s["alert_id"]) for tenant, s in snapshot] == [
        ("tenant-a", "x-1"),
        ("tenant-a", "x-0"),
    ]
