"""SlackChannelSender and verify_slack_request against a fake Slack speaking the Web API's format."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.notifier.adapters.slack import (
    SlackChannelSender,
    SlackChatSender,
    verify_slack_request,
)
from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from services.notifier.ports import Channel, Delivery
from shared.events import AlertEvent, AlertKind, Severity, TriggerReading
from tests.fakes.slack import FakeSlack, block_actions_payload, signed_interaction
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
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*RED* alert a-1"}}]
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def sender(http: httpx.AsyncClient, slack: FakeSlack, token: str = "") -> SlackChannelSender:
    return SlackChannelSender(client=http, base_url=slack.base_url, token=token or slack.token)


def delivery(**overrides: Any) -> Delivery:
    args: dict[str, Any] = {
        "idempotency_key": "k-1",
        "channel": Channel.SLACK,
        "recipient": "#care-alerts",
        "text": "RED alert a-1",
        "slack": {"blocks": BLOCKS, "attachments": [{"color": "#d00000", "blocks": []}]},
    }
    return Delivery(**(args | overrides))


async def test_post_answers_channel_id_and_ts_as_provider_ref(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    receipt = await sender(http, fake_slack).send(delivery())
    (call,) = fake_slack.calls
    assert receipt.provider_ref == f"C0CAREALERT:{call.ts}" and receipt.latency_s > 0
    assert call.body["channel"] == "#care-alerts" and call.body["blocks"] == BLOCKS
    assert call.body["attachments"][0]["color"] == "#d00000"


async def test_thread_ref_replies_under_the_parent(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    parent = await sender(http, fake_slack).send(delivery())
    reply = await sender(http, fake_slack).send(
        delivery(text="acked by nurse", slack=None, thread_ref=parent.provider_ref)
    )
    parent_ts = parent.provider_ref.split(":")[1]
    assert fake_slack.calls[1].body["thread_ts"] == parent_ts
    assert fake_slack.messages[reply.provider_ref.split(":")[1]]["thread_ts"] == parent_ts


async def test_update_ref_edits_the_message_in_place(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    posted = await sender(http, fake_slack).send(delivery())
    edited = await sender(http, fake_slack).send(
        delivery(text="RED alert a-1 (acked)", update_ref=posted.provider_ref)
    )
    assert edited.provider_ref == posted.provider_ref and len(fake_slack.calls) == 1
    (update,) = fake_slack.updates
    assert update.body["channel"] == "C0CAREALERT"
    assert fake_slack.messages[update.ts]["text"] == "RED alert a-1 (acked)"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"update_ref": "C0CAREALERT:1700000000.000001"}, "message_not_found"),
        ({"thread_ref": "C0CAREALERT:1700000000.000001"}, "thread_not_found"),
        ({"recipient": "#nowhere"}, "channel_not_found"),
        ({"update_ref": "no-colon-here"}, "invalid_ref"),
    ],
)
async def test_refusals_are_permanent_with_slacks_error_code(
    http: httpx.AsyncClient, fake_slack: FakeSlack, overrides: dict[str, str], error: str
) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await sender(http, fake_slack).send(delivery(**overrides))
    assert caught.value.code == error and not caught.value.disable_recipient
    assert fake_slack.calls == [] and fake_slack.updates == []


async def test_wrong_token_is_permanent(http: httpx.AsyncClient, fake_slack: FakeSlack) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await sender(http, fake_slack, token="xoxb-wrong").send(delivery())
    assert caught.value.code == "invalid_auth" and len(fake_slack.rejected) == 1


async def test_429_is_transient_with_retry_after_and_no_wait(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    fake_slack.rate_limit_next, fake_slack.retry_after_s = 1, 30
    started = time.monotonic()
    with pytest.raises(TransientDeliveryError) as caught:
        await sender(http, fake_slack).send(delivery())
    assert caught.value.retry_after_s == 30.0
    # One attempt only, answered at once: the caller schedules the retry, not the adapter.
    assert [r["status"] for r in fake_slack.rejected] == [429] and fake_slack.calls == []
    assert time.monotonic() - started < 10


async def test_unreachable_slack_is_transient(http: httpx.AsyncClient) -> None:
    dead = SlackChannelSender(client=http, base_url="http://127.0.0.1:9/api", token="x")
    with pytest.raises(TransientDeliveryError):
        await dead.send(delivery())


async def test_slack_calls_use_slack_timeout_not_the_shared_clients() -> None:
    seen: list[dict[str, float | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"ok": True, "channel": "C1", "ts": "1.0"})

    async with httpx.AsyncClient(timeout=10, transport=httpx.MockTransport(answer)) as client:
        slack = SlackChannelSender(client=client, base_url="http://slack", token="x", timeout_s=2.5)
        await slack.send(delivery())
        default = SlackChannelSender(client=client, base_url="http://slack", token="x")
        await default.send(delivery())
    assert seen[0]["read"] == 2.5 and seen[0]["connect"] == 2.5
    assert seen[1]["read"] == 10


@pytest.mark.parametrize("body", [[], "ok", 5, [{"ok": True}]])
async def test_slack_json_that_is_not_an_object_is_a_transient_delivery_error(
    body: object,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        slack = SlackChannelSender(client=client, base_url="http://slack", token="x")
        with pytest.raises(TransientDeliveryError, match="not a JSON object"):
            await slack.send(delivery())


async def test_send_alert_posts_the_block_kit_alert(
    http: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    alert_sender = SlackChatSender(
        client=http,
        base_url=fake_slack.base_url,
        token=fake_slack.token,
        channel="#care-alerts",
        dashboard_url="http://dash/",
    )
    await alert_sender.send_alert(EVENT)
    (call,) = fake_slack.calls
    assert call.body["channel"] == "#care-alerts" and call.body["blocks"]
    assert "pt-5" in call.body["text"] and call.body["unfurl_links"] is False


def interaction(timestamp: int, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    payload = block_actions_payload(action_id="ack", value="a-1", message_ts="1700000000.000100")
    return signed_interaction(payload, secret, timestamp)


@pytest.mark.parametrize(
    ("age_s", "valid"), [(0, True), (299, True), (-299, True), (301, False), (-301, False)]
)
def test_slack_signature_holds_for_five_minutes(age_s: int, valid: bool) -> None:
    body, headers = interaction(1_700_000_000)
    assert body.startswith(b"payload=%7B%22type%22%3A+%22block_actions%22")
    assert (
        verify_slack_request(
            signing_secret=SECRET,
            timestamp=headers["X-Slack-Request-Timestamp"],
            body=body,
            signature=headers["X-Slack-Signature"],
            now=1_700_000_000 + age_s,
        )
        is valid
    )


@pytest.mark.parametrize(
    ("tamper", "secret"),
    [
        (lambda body, h: (body.replace(b"a-1", b"a-2"), h), SECRET),
        (lambda body, h: (body, h | {"X-Slack-Request-Timestamp": "1700000001"}), SECRET),
        (lambda body, h: (body, h | {"X-Slack-Request-Timestamp": "soon"}), SECRET),
        (lambda body, h: (body, h | {"X-Slack-Signature": ""}), SECRET),
        (lambda body, h: (body, h), "another-secret"),
    ],
    ids=["body", "timestamp", "non-numeric-timestamp", "no-signature", "wrong-secret"],
)
def test_tampered_slack_request_is_refused(tamper: Any, secret: str) -> None:
    body, headers = tamper(*interaction(1_700_000_000))
    assert not verify_slack_request(
        signing_secret=secret,
        timestamp=headers["X-Slack-Request-Timestamp"],
        body=body,
        signature=headers["X-Slack-Signature"],
        now=1_700_000_000,
    )
