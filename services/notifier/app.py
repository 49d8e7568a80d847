"""Composition root of the notifier service."""

from __future__ import annotations

from functools import partial

import httpx
from fastapi import FastAPI

from services.notifier.adapters.console import ConsoleAlertSender
from services.notifier.adapters.dedup import RecentEventIds
from services.notifier.adapters.slack import SlackChatSender
from services.notifier.handlers import erase_patient, export_patient, on_alert_event
from services.notifier.ports import AlertSender
from services.notifier.settings import NotifierSettings
from shared.service import ServiceKit
from shared.topics import ALERTS

SERVICE = "notifier"


def create_app(settings: NotifierSettings) -> FastAPI:
    """Build the notifier app: consume alerts.v1 and page the on-call channel."""
    kit = ServiceKit(
        service=SERVICE,
        settings=settings,
        group_id=settings.notifier_group_id,
        erase=erase_patient,
    )
    http = httpx.AsyncClient(timeout=settings.slack_timeout_s)
    kit.close_on_shutdown(http.aclose)
    kit.runtime.add_consumer(
        ALERTS,
        partial(
            on_alert_event,
            sender=_sender(settings, http),
            seen=RecentEventIds(),
            consent=kit.consent,
        ),
        group_id=settings.notifier_group_id,
    )
    return kit.build_app(
        title="Notifier",
        description="Tells on-call agents about alerts.v1 events (Slack, or the console by default).",
        max_body_bytes=65_536,
        export=export_patient,
    )


def _sender(settings: NotifierSettings, http: httpx.AsyncClient) -> AlertSender:
    """Slack when a bot token is configured, else the console sink."""
    if settings.slack_bot_token is None:
        return ConsoleAlertSender()
    return SlackChatSender(
        client=http,
        base_url=settings.slack_api_base_url,
        token=settings.slack_bot_token.get_secret_value(),
        channel=settings.slack_channel,
        dashboard_url=settings.notifier_dashboard_url,
    )
