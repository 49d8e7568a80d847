"""Composition root of the notifier service."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.notifier.actions import erase_patient, export_patient, on_consent_changed
from services.notifier.adapters.console import ConsoleChannelSender
from services.notifier.adapters.dispatcher import Dispatcher
from services.notifier.adapters.fcm import FcmPushSender, load_service_account
from services.notifier.adapters.http_transport import AiohttpTransport
from services.notifier.adapters.live_feed import LiveFeed
from services.notifier.adapters.metrics import DeliveryMetrics
from services.notifier.adapters.outcomes import Outcomes
from services.notifier.adapters.rate_limit import ChannelPacer
from services.notifier.adapters.scheduler import Scheduler
from services.notifier.adapters.slack import SlackChannelSender
from services.notifier.adapters.store import ALERT_LIST_LIMIT, Store, list_alerts
from services.notifier.adapters.tables import outbox
from services.notifier.adapters.twilio import TwilioMessageSender
from services.notifier.api import build_router
from services.notifier.dashboard import build_dashboard_router
from services.notifier.domain import (
    DEFAULT_ROUTING_FILE,
    RetryPolicy,
    Routing,
    load_routing,
    slack_alert_message,
)
from services.notifier.handlers import Notifier, on_alert_events
from services.notifier.interactions_api import build_callbacks_router, status_callback_url
from services.notifier.ports import Channel, ChannelSender
from services.notifier.records import AlertRow
from services.notifier.settings import NotifierSettings
from shared.db import make_engine, migrate
from shared.outbox import OutboxRelay
from shared.service import ServiceKit
from shared.topics import ALERTS

SERVICE = "notifier"
MIGRATIONS = Path(__file__).parent / "migrations"


def load_routing_file(settings: NotifierSettings) -> Routing:
    """Read and validate the routing file; raises RoutingError naming the field."""
    path = Path(settings.notifier_routing_file or DEFAULT_ROUTING_FILE)
    return load_routing(path.read_text(encoding="utf-8"), source=str(path))


def create_app(settings: NotifierSettings) -> FastAPI:
    """Build the notifier app; a bad routing file raises RoutingError naming the field."""
    routing = load_routing_file(settings)
    db = make_engine(
        settings.notifier_database_url,
        schema=settings.notifier_database_schema,
        sqlite_inline=settings.notifier_sqlite_inline,
    )
    store = Store(db, clock=lambda: datetime.now(UTC))

    async def erase(patient_id: str) -> str:
        return await erase_patient(patient_id, n=notifier)

    kit = ServiceKit(
        service=SERVICE, settings=settings, group_id=settings.notifier_group_id, erase=erase
    )
    notifier = Notifier(
        store=store,
        routing=routing,
        consent=kit.consent,
        dashboard_url=settings.notifier_dashboard_url,
        ops_channel=settings.ops_channel,
    )
    feed = LiveFeed(partial(open_summaries, store))
    outcomes = _wire(kit, notifier, settings, feed=feed)
    app = kit.build_app(
        title="Notifier",
        description="Pages on-call agents and patients about alerts.v1 events: Slack, SMS, "
        "WhatsApp, push; escalation, acknowledgement, durable delivery.",
        max_body_bytes=65_536,
        export=partial(export_patient, n=notifier),
    )
    app.state.notifier = notifier
    app.state.outcomes = outcomes
    app.state.feed = feed
    # The dashboard first: its GET /v1/alerts/stream must not be taken for /v1/alerts/{alert_id}.
    app.include_router(build_dashboard_router(feed))
    app.include_router(build_router())
    app.include_router(build_callbacks_router())
    return app


def _wire(
    kit: ServiceKit, notifier: Notifier, settings: NotifierSettings, *, feed: LiveFeed
) -> Outcomes:
    """Workers, consumers, startup and shutdown steps; return the outcome writer."""
    # The dispatcher runs at most notifier_send_concurrency sends at once: as many connections.
    # httpx's API over aiohttp's pool (AiohttpTransport: httpx's own pool cost ~3 ms CPU a send).
    http = httpx.AsyncClient(
        timeout=settings.provider_timeout_s,
        transport=AiohttpTransport(limit=settings.notifier_send_concurrency),
    )
    dispatcher, outcomes = _dispatcher(kit, notifier, settings, http)
    scheduler = Scheduler(notifier, poll_s=settings.notifier_poll_s)
    relay = OutboxRelay(engine=notifier.store.engine, table=outbox, publisher=kit.runtime.publisher)
    dispatcher.after_dead_letter = relay.notify

    def committed(rows: list[AlertRow], adopted: str | None) -> None:
        if adopted is not None:
            dispatcher.adopt(adopted, rows)
        dispatcher.notify()
        scheduler.notify(rows)
        for row in rows:
            feed.publish(row.summary(), tenant_id=row.tenant_id)

    async def start_workers() -> None:
        # Owned by the runtime (cancelled and awaited on stop), started before Kafka connects:
        # what is already in the database is sent even while the broker is away.
        kit.runtime.spawn("delivery-dispatcher", dispatcher.run)
        kit.runtime.spawn("escalation-scheduler", scheduler.run)

    async def close_feed() -> None:
        feed.close()

    notifier.on_commit.append(committed)
    notifier.adopt_ttl = timedelta(seconds=settings.notifier_claim_ttl_s)
    kit.on_startup(partial(migrate, notifier.store.engine, MIGRATIONS))
    kit.on_startup(start_workers)
    for closer in (notifier.store.engine.dispose, http.aclose, close_feed):
        kit.close_on_shutdown(closer)
    kit.consent.on_change(partial(on_consent_changed, n=notifier))
    kit.runtime.add_component("outbox_relay", relay.run, lambda: True)
    kit.runtime.add_batch_consumer(
        ALERTS, partial(on_alert_events, notifier=notifier), group_id=settings.notifier_group_id
    )
    return outcomes


def _dispatcher(
    kit: ServiceKit, notifier: Notifier, settings: NotifierSettings, http: httpx.AsyncClient
) -> tuple[Dispatcher, Outcomes]:
    """The delivery worker and the writer of its outcomes."""
    outcomes = Outcomes(
        policy=RetryPolicy(
            base=timedelta(seconds=settings.notifier_retry_base_s),
            cap=timedelta(seconds=settings.notifier_retry_cap_s),
            max_attempts=settings.notifier_max_attempts,
            rate_limit_max_wait=timedelta(seconds=settings.notifier_rate_limit_max_wait_s),
        ),
        ops_channel=settings.ops_channel,
        metrics=DeliveryMetrics(kit.registry),
        rand=random.random,
    )
    dispatcher = Dispatcher(
        store=notifier.store,
        senders=build_senders(settings, http),
        outcomes=outcomes,
        pacer=ChannelPacer(
            rate=settings.slack_channel_rate_per_s, burst=settings.slack_channel_burst
        ),
        consent=kit.consent,
        render=partial(_render, dashboard_url=settings.notifier_dashboard_url),
        concurrency=settings.notifier_send_concurrency,
        claim_ttl_s=settings.notifier_claim_ttl_s,
        poll_s=settings.notifier_poll_s,
    )
    return dispatcher, outcomes


def build_senders(
    settings: NotifierSettings, http: httpx.AsyncClient
) -> dict[Channel, ChannelSender]:
    """Each configured provider's sender; the console for every channel when none is configured."""
    senders: dict[Channel, ChannelSender] = {}
    if settings.slack_bot_token is not None:
        senders[Channel.SLACK] = SlackChannelSender(
            client=http,
            base_url=settings.slack_api_base_url,
            token=settings.slack_bot_token.get_secret_value(),
            timeout_s=settings.slack_timeout_s,
        )
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from:
        for channel in (Channel.SMS, Channel.WHATSAPP):
            senders[channel] = TwilioMessageSender(
                client=http,
                channel=channel,
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token.get_secret_value(),
                from_number=settings.twilio_from,
                base_url=settings.twilio_api_base_url,
                status_callback=status_callback_url(settings),
            )
    if settings.fcm_credentials_file:
        account = load_service_account(settings.fcm_credentials_file)
        if settings.fcm_project_id:
            account = dataclasses.replace(account, project_id=settings.fcm_project_id)
        senders[Channel.PUSH] = FcmPushSender(
            client=http, account=account, api_base_url=settings.fcm_api_base_url
        )
    if not senders:
        senders = {
            c: ConsoleChannelSender(c)
            for c in (Channel.SLACK, Channel.SMS, Channel.WHATSAPP, Channel.PUSH)
        }
    return senders


def _render(alert: AlertRow, *, dashboard_url: str) -> dict[str, Any]:
    return slack_alert_message(alert.snapshot, alert.last_event, dashboard_url=dashboard_url)


async def open_summaries(
    store: Store, tenant_id: str | None, admin: bool, *, limit: int = ALERT_LIST_LIMIT
) -> list[tuple[str | None, dict[str, Any]]]:
    """The open alerts a viewer may see, with their tenants (the live feed's snapshot)."""
    async with store.reading() as conn:
        rows = await list_alerts(
            conn, open_only=True, tenant_id=tenant_id, admin=admin, limit=limit
        )
    return [(row.tenant_id, row.summary()) for row in rows]
