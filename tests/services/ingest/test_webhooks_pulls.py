"""The pull consumer's decisions that the end-to-end tests cannot reach cheaply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.ingest.adapters.connections_store import NewConnection, SqlConnectionStore
from services.ingest.adapters.deferred_pulls import SqlDeferredPullStore
from services.ingest.adapters.fitbit_api import FitbitApiClient
from services.ingest.adapters.garmin_api import GarminApiClient
from services.ingest.app import MIGRATIONS
from services.ingest.connections import Connection, ConnectionStatus, Vendor
from services.ingest.pulls import VendorPuller, interval_filter
from services.ingest.webhook_support import VendorPipeline
from shared.consumer import MessageContext
from shared.db import make_engine, migrate
from shared.events import VendorNotification
from shared.kafka import UnprocessableEventError

NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data_type", "field"),
    [
        ("heart-rate", "heart_rate.sample_time.physical_time"),
        ("oxygen-saturation", "oxygen_saturation.sample_time.physical_time"),
    ],
)
def test_the_google_list_filter_is_qualified_by_the_data_type(data_type: str, field: str) -> None:
    start, end = "2026-05-01T10:00:00+00:00", "2026-05-01T10:15:00+00:00"
    assert interval_filter(data_type, start, end) == (f'{field} >= "{start}" AND {field} < "{end}"')


class OneGarminConnection:
    """The part of the connection store the puller reads."""

    async def find(self, vendor: Vendor, vendor_user: str) -> Connection:
        return Connection(
            connection_id="c-1",
            vendor=vendor,
            vendor_user=vendor_user,
            patient_id="pt-1",
            tenant_id="tenant-a",
            status=ConnectionStatus.ACTIVE,
            status_reason=None,
            utc_offset_minutes=None,
            has_tokens=False,
            created_at=NOW,
            updated_at=NOW,
            created_by="admin",
        )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def deferrals(tmp_path: Path) -> AsyncIterator[SqlDeferredPullStore]:
    db = make_engine(f"sqlite:///{tmp_path}/ingest.db")
    await migrate(db, MIGRATIONS)
    try:
        yield SqlDeferredPullStore(db)
    finally:
        await db.dispose()


def fitbit_notice(day: str, *, user: str = "GGNJL9") -> VendorNotification:
    return VendorNotification(
        notification_id=f"n-{user}-{day}",
        vendor="fitbit",
        vendor_user=user,
        kind="activities",
        detail={"date": day, "collection": "activities"},
        received_at=NOW,
    )


async def test_repeated_notices_while_deferred_are_one_pull_due_at_the_latest_wait(
    deferrals: SqlDeferredPullStore,
) -> None:
    notice = fitbit_notice("2024-05-01")
    for wait_s in (20, 60, 30):
        await deferrals.defer(notice, not_before=NOW + timedelta(seconds=wait_s), now=NOW)
    await deferrals.defer(fitbit_notice("2024-05-02"), not_before=NOW, now=NOW)
    assert await deferrals.deferred_until("fitbit", "GGNJL9", now=NOW) == NOW + timedelta(
        seconds=60
    )
    assert await deferrals.deferred_until("fitbit", "OTHER1", now=NOW) is None
    due = await deferrals.due(now=NOW + timedelta(seconds=59))
    assert [d.notification.detail["date"] for d in due] == ["2024-05-02"]
    due = await deferrals.due(now=NOW + timedelta(seconds=61))
    assert [d.notification for d in due] == [fitbit_notice("2024-05-02"), notice]


async def test_a_pull_rate_limited_again_while_being_requeued_stays_deferred(
    deferrals: SqlDeferredPullStore,
) -> None:
    notice, later = fitbit_notice("2024-05-01"), NOW + timedelta(seconds=30)
    await deferrals.defer(notice, not_before=NOW, now=NOW)
    published: list[VendorNotification] = []

    async def publish(notifications: list[VendorNotification]) -> None:
        published.extend(notifications)
        # The consumer pulled the requeued copy and got 429 again before the relay let go.
        await deferrals.defer(notice, not_before=later, now=NOW)

    assert await deferrals.requeue_due(now=NOW, limit=10, publish=publish) == 1
    assert published == [notice]
    assert await deferrals.due(now=NOW) == []
    assert [d.notification for d in await deferrals.due(now=later)] == [notice]
    assert await deferrals.requeue_due(now=later, limit=10, publish=publish) == 1
    assert await deferrals.due(now=later) == []


async def test_erasing_a_patient_deletes_the_pulls_deferred_for_their_accounts(
    tmp_path: Path,
) -> None:
    db = make_engine(f"sqlite:///{tmp_path}/erase.db")
    await migrate(db, MIGRATIONS)
    connections, deferrals = SqlConnectionStore(db, None), SqlDeferredPullStore(db)
    try:
        for patient, user in (("pt-erased", "g-erased"), ("pt-kept", "g-kept")):
            new = NewConnection(Vendor.GARMIN, user, patient, "tenant-a", "admin")
            await connections.create(new, now=NOW)
        for n, user in enumerate(("g-erased", "g-erased", "g-kept")):
            notice = VendorNotification(
                notification_id=f"n-{n}",
                vendor="garmin",
                vendor_user=user,
                kind="dailies",
                detail={"callback_url": f"https://apis.garmin.com/x?token=T{n}"},
                received_at=NOW,
            )
            await deferrals.defer(notice, not_before=NOW + timedelta(minutes=5), now=NOW)
        assert await connections.delete_patient("pt-erased") == 1
        later = NOW + timedelta(minutes=6)
        assert [d.notification.vendor_user for d in await deferrals.due(now=later)] == ["g-kept"]
        assert await deferrals.deferred_until("garmin", "g-erased", now=NOW) is None
        assert [c.vendor_user for c in await connections.list_for_patient("pt-kept")] == ["g-kept"]
    finally:
        await db.dispose()


async def test_a_queued_ping_whose_callback_is_no_longer_trusted_is_dead_lettered(
    http: httpx.AsyncClient, deferrals: SqlDeferredPullStore
) -> None:
    # Queued under one GARMIN_API_BASE_URL, pulled under another (a config change in between):
    # the callback can never be fetched, so it must not be retried forever on its partition.
    pipeline = VendorPipeline(
        settings=None,
        connections=OneGarminConnection(),
        publisher=None,
        consent=None,
        audit_sink=None,
        metrics=None,
    )
    puller = VendorPuller(
        pipeline=pipeline,
        fitbit=None,
        google=None,
        garmin=GarminApiClient(http=http, base_url="https://apis.garmin.example"),
        deferrals=deferrals,
    )
    event = VendorNotification(
        notification_id="n-1",
        vendor="garmin",
        vendor_user="g-1",
        kind="dailies",
        detail={"callback_url": "https://apis.garmin.com/wellness-api/rest/dailies?token=X"},
        received_at=NOW,
    )
    ctx = MessageContext(topic="vendor-notifications.v1", partition=0, offset=0, key=b"g-1")
    with pytest.raises(UnprocessableEventError) as raised:
        await puller.on_vendor_notification(event, ctx)
    assert raised.value.reason == "untrusted_callback_url"


async def test_a_fitbit_pull_for_a_connection_without_a_utc_offset_is_dead_lettered(
    http: httpx.AsyncClient, deferrals: SqlDeferredPullStore
) -> None:
    # Fitbit times are local: stamping them as UTC would shift every reading by hours, silently.
    async def no_exchange(vendor_user: str, exchange: Any) -> Any:
        raise AssertionError("no token may be used before the offset is known")

    pipeline = VendorPipeline(
        settings=None,
        connections=OneGarminConnection(),  # utc_offset_minutes=None, as made before 422
        publisher=None,
        consent=None,
        audit_sink=None,
        metrics=None,
    )
    fitbit = FitbitApiClient(
        http=http, client_id="c", client_secret="s", exchange_tokens=no_exchange
    )
    puller = VendorPuller(
        pipeline=pipeline, fitbit=fitbit, google=None, garmin=None, deferrals=deferrals
    )
    ctx = MessageContext(topic="vendor-notifications.v1", partition=0, offset=0, key=b"GGNJL9")
    with pytest.raises(UnprocessableEventError) as raised:
        await puller.on_vendor_notification(fitbit_notice("2024-05-01"), ctx)
    assert raised.value.reason == "fitbit_utc_offset_unknown"


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_two_replicas_relaying_at_once_requeue_a_due_pull_once(
    database: dict[str, Any],
) -> None:
    engines = [
        make_engine(database["database_url"], schema=database["database_schema"]) for _ in range(2)
    ]
    try:
        await migrate(engines[0], MIGRATIONS)
        first, second = (SqlDeferredPullStore(e) for e in engines)
        notice = fitbit_notice("2024-05-01")
        await first.defer(notice, not_before=NOW, now=NOW)
        claimed, release = asyncio.Event(), asyncio.Event()
        published: list[VendorNotification] = []

        async def slow_publish(notifications: list[VendorNotification]) -> None:
            published.extend(notifications)
            claimed.set()
            await release.wait()  # the broker is slow to acknowledge

        async def publish(notifications: list[VendorNotification]) -> None:
            published.extend(notifications)

        one = asyncio.create_task(first.requeue_due(now=NOW, limit=10, publish=slow_publish))
        await claimed.wait()
        async with asyncio.timeout(5):  # skips the claimed row rather than waiting for it
            assert await second.requeue_due(now=NOW, limit=10, publish=publish) == 0
        release.set()
        assert await one == 1
        assert published == [notice]
        assert await second.due(now=NOW) == []
    finally:
        for engine in engines:
            await engine.dispose()
