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
from services.notifier.handlers import on_alert_event
from services.notifier.ports import AlertSender
from services.notifier.settings import NotifierSettings
from shared.http import build_app, ops_router
from shared.runtime import KafkaRuntime
from shared.topics import ALERTS

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
            dashboard_url=settings.dashboard_url,
        )
    else:
        sender = ConsoleAlertSender()
    runtime.add_consumer(
        ALERTS,
        partial(on_alert_event, sender=sender, seen=RecentEventIds()),
        group_id=settings.group_id,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
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
    return app
