"""SlackChatSender against a fake Slack speaking chat.postMessage's wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from services.notifier.adapters.slack import SlackChatSender
from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from shared.events import AlertEvent, AlertKind, Severity, TriggerReading
from tests.fakes.slack import FakeSlack
from tests.services.notifier.rules import HEART_RATE_HIGH

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EVENT = AlertEvent(
    event_id="e-1",
    alert_id="a-1",
    patient_id="pt-5",
    kind=AlertKind.OPENED,
    severity=Severity.RED,
    previous_severity=Severity.GREEN,
    rule=HEART_RATE_HIGH,
    readings=(
        TriggerReading(reading_id="r", metric="heart_rate", value=150, unit="/min", measured_at=AT),
    ),
    occurred_at=AT,
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def sender(http: httpx.AsyncClient, slack: FakeSlack, **overrides: str) -> SlackChatSender:
    args = {"base_url": slack.base_url, "token": slack.token, "channel": "#care-alerts"}
    args.update(overrides)
    return SlackChatSender(client=http, dashboard_url="http://dash/", **args)


async def test_posts_with_bearer_token_and_block_kit(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    await sender(http, fake_slack).send_alert(EVENT)
    (call,) = fake_slack.calls
    assert call.body["channel"] == "#care-alerts" and call.body["blocks"]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [({"token": "xoxb-wrong"}, "invalid_auth"), ({"channel": "#nowhere"}, "channel_not_found")],
)
async def test_permanent_refusals_are_not_retried(
    http: httpx.AsyncClient, fake_slack: FakeSlack, overrides: dict[str, str], error: str
) -> None:
    with pytest.raises(PermanentDeliveryError, match=error):
        await sender(http, fake_slack, **overrides).send_alert(EVENT)
    assert fake_slack.calls == [] and len(fake_slack.rejected) == 1


async def test_429_retry_after_is_honoured(http: httpx.AsyncClient, fake_slack: FakeSlack) -> None:
    fake_slack.rate_limit_next, fake_slack.retry_after_s = 1, 1
    await sender(http, fake_slack).send_alert(EVENT)
    assert [r["status"] for r in fake_slack.rejected] == [429]
    (call,) = fake_slack.calls
    # The retry came no sooner than Slack asked.
    assert call.received_at - fake_slack.rejected[0]["at"] >= 1.0


async def test_unreachable_slack_is_transient(http: httpx.AsyncClient) -> None:
    dead = SlackChatSender(
        client=http,
        base_url="http://127.0.0.1:9/api",
        token="x",
        channel="#c",
        dashboard_url="http://dash/",
    )
    with pytest.raises(TransientDeliveryError):
        await dead.send_alert(EVENT)
