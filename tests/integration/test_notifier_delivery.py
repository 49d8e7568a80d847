"""Delivery guarantees on real parts: embedded broker, SQLite/PostgreSQL, fake Slack and Twilio on
loopback. Nothing is lost, nothing is sent twice, failures retry, fall over, then dead-letter."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from services.notifier.settings import NotifierSettings
from shared.events import DeadLetter, Purpose
from shared.topics import DEADLETTER
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import FakeTwilio
from tests.integration.notifier_harness import notifier_settings
from tests.services.notifier.harness import (
    db_settings,
    eventually,
    publish_alerts,
    publish_consent,
    put_contact,
    read_topic,
    running,
    twilio_messages_to,
)
from tests.services.notifier.support import alert_event, consent_event

pytestmark = pytest.mark.integration


def posts_for(slack: FakeSlack, patient: str) -> list[Any]:
    """Main posts (not thread replies) that mention a patient."""
    return [c for c in slack.calls_mentioning(patient) if "thread_ts" not in c.body]


async def test_an_alert_reaches_slack_once_even_when_redelivered(
    broker: str,
    idp: FakeIdP,
    database: dict[str, Any],
    tmp_path: Path,
    fake_slack: FakeSlack,
    twilio: FakeTwilio,
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio, db=db_settings(database))
    async with running(config, fake_slack, twilio):
        event = alert_event(patient="pt-once", alert_id="a-once")
        await publish_alerts(broker, event, event)
        await publish_alerts(broker, event)  # a rules instance replaying after a crash
        await publish_alerts(broker, alert_event("e-2", patient="pt-next", alert_id="a-next"))
        assert await asyncio.to_thread(
            fake_slack.wait_for, lambda _: len(posts_for(fake_slack, "pt-next")) == 1, 10
        )
    assert len(posts_for(fake_slack, "pt-once")) == 1
    post = posts_for(fake_slack, "pt-once")[0].body
    assert post["channel"] == "#care-alerts"
    buttons = next(b for b in post["blocks"] if b["type"] == "actions")["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Acknowledge", "Escalate", "Resolve"]


async def test_a_send_pending_at_shutdown_goes_out_exactly_once_after_restart(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    config = notifier_settings(
        broker,
        idp,
        tmp_path,
        fake_slack,
        twilio,
        notifier_retry_base_s=3.0,
        notifier_retry_cap_s=3.0,
    )
    fake_slack.rate_limit_next, fake_slack.retry_after_s = 1, 2
    async with running(config, fake_slack, twilio):
        await publish_alerts(broker, alert_event(patient="pt-restart", alert_id="a-restart"))
        await eventually(lambda: fake_slack.rejected)  # stored, tried once, rescheduled
    assert fake_slack.calls == []
    async with running(config, fake_slack, twilio):  # same database, a new process
        assert await asyncio.to_thread(fake_slack.wait_for, lambda c: len(c) >= 1, 10)
        await publish_alerts(broker, alert_event("e-2", patient="pt-after", alert_id="a-after"))
        assert await asyncio.to_thread(
            fake_slack.wait_for, lambda _: len(posts_for(fake_slack, "pt-after")) == 1, 10
        )
    assert len(posts_for(fake_slack, "pt-restart")) == 1
    assert len(fake_slack.rejected) == 1


async def test_sms_errors_retry_fall_over_and_finally_dead_letter(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    """Transient 500 → retried; opted-out SMS (21610) → WhatsApp at once; a number that cannot
    get SMS and has nothing else → deadletter.v1 and a notice in the ops Slack channel."""
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio)
    retried, opted_out, dead = "+5511911110001", "+5511911110002", "+5511911110003"
    whatsapp_number = "+5511911110004"
    twilio.server_error_next = 1
    twilio.opted_out.add(opted_out)
    twilio.not_mobile.add(dead)
    async with running(config, fake_slack, twilio) as service:
        await publish_consent(
            broker,
            *(consent_event(p, Purpose.NOTIFICATIONS, True) for p in ("pt-r", "pt-o", "pt-d")),
        )
        await eventually(lambda: service.notifier.consent.tenant_of("pt-d"))
        await put_contact(service, idp, "pt-r", phone=retried, preferred_channels=["sms"])
        await put_contact(
            service,
            idp,
            "pt-o",
            phone=opted_out,
            whatsapp=whatsapp_number,
            preferred_channels=["sms", "whatsapp"],
        )
        await put_contact(service, idp, "pt-d", phone=dead, preferred_channels=["sms"])
        await publish_alerts(
            broker,
            alert_event("e-r", patient="pt-r", alert_id="a-r"),
            alert_event("e-o", patient="pt-o", alert_id="a-o"),
            alert_event("e-d", patient="pt-d", alert_id="a-d"),
        )
        await eventually(lambda: twilio_messages_to(twilio, retried))
        await eventually(lambda: twilio_messages_to(twilio, whatsapp_number))
        (raw,) = await read_topic(broker, DEADLETTER.name, 1)
        assert await asyncio.to_thread(
            fake_slack.wait_for,
            lambda _: fake_slack.calls_mentioning("Notifier could not deliver"),
            10,
        )
    assert {e["code"] for e in twilio.rejected} == {20500, 21610, 21614}
    assert twilio_messages_to(twilio, opted_out) == []
    (whatsapp,) = twilio_messages_to(twilio, whatsapp_number)
    assert whatsapp["to"] == f"whatsapp:{whatsapp_number}"
    letter = DeadLetter.model_validate_json(raw)
    assert letter.service == "notifier" and "21614" in letter.detail
    assert json.loads(letter.payload)["alert_id"] == "a-d"
    assert dead not in raw.decode()  # the dead letter names the patient id, not the number
    (notice,) = fake_slack.calls_mentioning("Notifier could not deliver")
    assert "a-d" in notice.body["text"] and dead not in notice.body["text"]


async def test_slack_gets_at_most_one_message_a_second_per_channel_at_the_default_pacing(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    defaults = NotifierSettings()
    config = notifier_settings(
        broker,
        idp,
        tmp_path,
        fake_slack,
        twilio,
        slack_channel_rate_per_s=defaults.slack_channel_rate_per_s,
        slack_channel_burst=defaults.slack_channel_burst,
    )
    async with running(config, fake_slack, twilio):
        events = [
            alert_event(f"e-pace{i}", patient=f"pt-pace{i}", alert_id=f"a-pace{i}")
            for i in range(3)
        ]
        await publish_alerts(broker, *events)  # three alerts at once, one channel
        await eventually(lambda: all(posts_for(fake_slack, f"pt-pace{i}") for i in range(3)))
    arrivals = sorted(
        c.received_at for c in fake_slack.calls if "#care-alerts" == c.body["channel"]
    )
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # ~1 s apart (a burst would arrive together); the slack is for network jitter on 2 cores
    assert len(arrivals) >= 3 and min(gaps) >= 0.8, gaps
