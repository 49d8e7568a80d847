"""The notifier's HTTP transport (httpx API over aiohttp) against the fake Slack on loopback: what
the channel senders rely on from httpx still holds (bodies, headers, status, failures)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.notifier.adapters.http_transport import AiohttpTransport
from services.notifier.adapters.slack import SlackChannelSender
from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from services.notifier.ports import Channel, Delivery
from tests.fakes.slack import FakeSlack

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*RED* alert a-1"}}]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5, transport=AiohttpTransport(limit=4)) as client:
        yield client


def delivery(text: str = "RED alert a-1") -> Delivery:
    return Delivery(
        idempotency_key="k-1",
        channel=Channel.SLACK,
        recipient="#care-alerts",
        text=text,
        slack={"blocks": BLOCKS},
    )


async def test_posts_reach_slack_and_answer_its_reference(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    sender = SlackChannelSender(client=http, base_url=fake_slack.base_url, token=fake_slack.token)
    receipts = [await sender.send(delivery(f"alert {i}")) for i in range(3)]  # one connection
    assert [c.body["text"] for c in fake_slack.calls] == ["alert 0", "alert 1", "alert 2"]
    assert [r.provider_ref for r in receipts] == [f"C0CAREALERT:{c.ts}" for c in fake_slack.calls]
    assert fake_slack.calls[0].body["blocks"] == BLOCKS


async def test_the_bearer_token_is_sent_and_a_refusal_read(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    wrong = SlackChannelSender(client=http, base_url=fake_slack.base_url, token="xoxb-wrong")
    with pytest.raises(PermanentDeliveryError) as caught:
        await wrong.send(delivery())
    assert caught.value.code == "invalid_auth" and fake_slack.calls == []


async def test_a_429_keeps_its_retry_after_header(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    fake_slack.rate_limit_next, fake_slack.retry_after_s = 1, 30
    sender = SlackChannelSender(client=http, base_url=fake_slack.base_url, token=fake_slack.token)
    with pytest.raises(TransientDeliveryError) as caught:
        await sender.send(delivery())
    assert caught.value.retry_after_s == 30.0


async def test_an_unreachable_provider_is_an_httpx_error(http: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError):
        await http.post("http://127.0.0.1:9/api/chat.postMessage", json={})
    dead = SlackChannelSender(client=http, base_url="http://127.0.0.1:9/api", token="x")
    with pytest.raises(TransientDeliveryError):
        await dead.send(delivery())
