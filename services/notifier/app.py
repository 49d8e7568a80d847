"""Composition root of the notifier service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.notifier.adapters.console import ConsoleAlertSender
from services.notifier.adapters.dedup import RecentEventIds
from services.notifier.adapters.slack import SlackChatSender
from services.notifier.handlers import erase_patient, export_patient, on_alert_event
from services.notifier.ports import AlertSender
from services.notifier.settings import NotifierSettings
from shared.auth import build_token_validator
from shared.consent_view import KafkaConsentView
from shared.dsr import export_router
from shared.erasure import erasure_handler
from shared.http import build_app, ops_router
from shared.kafka import KafkaAuditSink
from shared.runtime import KafkaRuntime
from shared.topics import ALERTS, ERASURE

SERVICE = "notifier"


def create_app(settings: NotifierSettings) -> FastAPI:
    """Build the notifier app: consume alerts.v1 and page the on-call channel."""
    registry = CollectorRegistry()
    runtime = KafkaRuntime(service=SERVICE, settings=settings, registry=registry)
    http = httpx.AsyncClient(timeout=settings.slack_timeout_s)
    sender: AlertSender
    if settings.slack_bot_token is not None:
        sender = SlackChatSender(
            client=http,
            base_url=settings.slack_api_base_url,
            token=settings.slack_bot_token.get_secret_value(),
            channel=settings.slack_channel,
            dashboard_url=settings.notifier_dashboard_url,
        )
    else:
        sender = ConsoleAlertSender()
    consent = KafkaConsentView(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        consent_required=settings.consent_required,
        client_id=f"{SERVICE}-consent-view",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    runtime.add_component("consent_view", consent.run, lambda: consent.caught_up)
    runtime.add_consumer(
        ALERTS,
        partial(on_alert_event, sender=sender, seen=RecentEventIds(), consent=consent),
        group_id=settings.notifier_group_id,
    )
    runtime.add_consumer(
        ERASURE,
        erasure_handler(service=SERVICE, erase=erase_patient, publisher=runtime.publisher),
        group_id=f"{settings.notifier_group_id}-erasure",
    )

    auth_http = httpx.AsyncClient(timeout=5.0)
    audit_sink = KafkaAuditSink(runtime.publisher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            await auth_http.aclose()
            await http.aclose()

    app = build_app(
        title="Notifier",
        description="Tells on-call agents about alerts.v1 events (Slack, or the console by default).",
        lifespan=lifespan,
        registry=registry,
        max_body_bytes=65_536,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.include_router(ops_router(checks=runtime.checks, registry=registry))
    app.state.token_validator = build_token_validator(settings, auth_http)
    app.state.audit_sink = audit_sink
    app.include_router(
        export_router(service=SERVICE, collect=export_patient, consent=consent, audit=audit_sink)
    )
    return app
