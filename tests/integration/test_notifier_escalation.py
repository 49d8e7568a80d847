"""Escalation, acknowledgement and resolution on real parts: timers in the database with second-
scale delays, acks over the API and from signed Slack buttons, every message updated at the end."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.notifier.adapters.tables import alerts
from shared.events import AlertKind, Purpose, Severity
from tests.conftest import bearer
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack, block_actions_payload, signed_interaction
from tests.fakes.twilio import FakeTwilio
from tests.integration.notifier_harness import consented, notifier_settings
from tests.services.notifier.harness import (
    SIGNING_SECRET,
    Service,
    api,
    db_settings,
    eventually,
    publish_alerts,
    publish_consent,
    put_contact,
    running,
    twilio_messages_to,
)
from tests.services.notifier.support import PATIENT_PHONE, ROUTING, alert_event, consent_event

pytestmark = pytest.mark.integration
ANA, MAX = "+5511900000001", "+5511900000002"


def updates_saying(slack: FakeSlack, text: str) -> list[Any]:
    """chat.update calls whose body mentions `text`."""
    return [u for u in list(slack.updates) if text in str(u.body)]


async def main_post(slack: FakeSlack, patient: str) -> Any:
    """The alert's main Slack message, once posted."""
    assert await asyncio.to_thread(
        slack.wait_for,
        lambda calls: any(patient in str(c.body) and "thread_ts" not in c.body for c in calls),
        10,
    )
    return next(c for c in slack.calls if patient in str(c.body) and "thread_ts" not in c.body)


async def of_tenant_a(service: Service, patient: str) -> None:
    """Record the patient's monitoring consent (tenant-a): only that tenant sees its alerts."""
    await consented(service, patient, Purpose.MONITORING)


async def next_wake(service: Service, alert_id: str) -> Any:
    async with service.notifier.store.reading() as conn:
        query = select(alerts.c.next_wake_at).where(alerts.c.alert_id == alert_id)
        return (await conn.execute(query)).scalar_one()


def sms_about(twilio: FakeTwilio, number: str, alert_id: str) -> list[dict[str, Any]]:
    """SMS to a number about one alert (agent messages name the alert id)."""
    return [m for m in twilio_messages_to(twilio, number) if alert_id in m["body"]]


async def probe_paged(service: Service, number: str, *, level_of: str = "manager") -> None:
    """Open a probe alert now and wait until `number` is paged for it.

    The probe's level comes later than that of any alert opened before it, and the scheduler
    serves due alerts in wake order: once the probe's page arrived, an earlier alert's page to
    the same person would have arrived too. So "nobody paged" can be checked, not assumed.
    """
    await publish_alerts(
        service.broker, alert_event("e-probe", patient="pt-probe", alert_id="a-probe")
    )
    await eventually(lambda: sms_about(service.twilio, number, "a-probe"), timeout=20)


async def test_an_unanswered_red_alert_climbs_to_the_manager(
    broker: str,
    idp: FakeIdP,
    database: dict[str, Any],
    tmp_path: Path,
    fake_slack: FakeSlack,
    twilio: FakeTwilio,
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio, db=db_settings(database))
    async with running(config, fake_slack, twilio) as service:
        await of_tenant_a(service, "pt-climb")
        opened = time.monotonic()
        await publish_alerts(broker, alert_event(patient="pt-climb", alert_id="a-climb"))
        await main_post(fake_slack, "pt-climb")
        await eventually(lambda: twilio_messages_to(twilio, ANA))
        agent_at = time.monotonic() - opened
        await eventually(lambda: twilio_messages_to(twilio, MAX))
        manager_at = time.monotonic() - opened
        response = await api(service, "GET", "/v1/alerts/a-climb", bearer(idp, "alerts:read"))
    # Lower bounds and order (the levels come at 2 s and 4 s); the upper bound only catches a
    # climb that is stuck, not a slow machine.
    assert 2.0 <= agent_at < manager_at < 30.0 and manager_at >= 4.0
    detail = response.json()
    assert (detail["status"], detail["level"]) == ("open", 3)
    reached = {
        (d["recipient_kind"], d["recipient"], d["channel"], d["status"])
        for d in detail["deliveries"]
        if d["role"] == "post"
    }
    assert ("agent", "ana", "sms", "sent") in reached and (
        "manager",
        "max",
        "sms",
        "sent",
    ) in reached
    assert "+55" not in response.text  # the timeline names people, never their numbers
    assert len(updates_saying(fake_slack, "Escalated to level 3")) >= 1


async def test_an_api_ack_stops_the_climb_and_updates_slack(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio)
    async with running(config, fake_slack, twilio) as service:
        await of_tenant_a(service, "pt-ack")
        await publish_alerts(broker, alert_event(patient="pt-ack", alert_id="a-ack"))
        await eventually(lambda: twilio_messages_to(twilio, ANA))  # level 2 reached
        ack = await api(
            service,
            "POST",
            "/v1/alerts/a-ack/ack",
            bearer(idp, "alerts:ack"),
            json={"via": "dashboard"},
        )
        assert ack.status_code == 200, ack.text
        assert ack.json()["status"] == "acknowledged"
        assert ack.json()["acknowledged_via"] == "dashboard"
        acked_at = datetime.now(UTC)
        await eventually(lambda: updates_saying(fake_slack, "Acknowledged by"))
        # the climb has stopped: the only timer left is the ack timeout (30 s) re-triggering it
        wake = await next_wake(service, "a-ack")
        assert acked_at + timedelta(seconds=25) < wake <= acked_at + timedelta(seconds=30)
        listed = await api(service, "GET", "/v1/alerts?status=open", bearer(idp, "alerts:read"))
        unknown = await api(service, "POST", "/v1/alerts/nope/ack", bearer(idp, "alerts:ack"))
        no_scope = await api(service, "POST", "/v1/alerts/a-ack/ack", bearer(idp, "alerts:read"))
        await probe_paged(service, MAX)  # past a-ack's manager level (4 s)
    assert sms_about(twilio, MAX, "a-ack") == []
    assert [a["alert_id"] for a in listed.json()["alerts"]] == ["a-ack"]
    assert (unknown.status_code, no_scope.status_code) == (404, 403)


async def test_slack_buttons_are_signed_and_only_mapped_agents_may_press_them(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio)
    async with running(config, fake_slack, twilio) as service:
        await of_tenant_a(service, "pt-btn")
        await publish_alerts(broker, alert_event(patient="pt-btn", alert_id="a-btn"))
        post = await main_post(fake_slack, "pt-btn")
        payload = block_actions_payload(action_id="alert_ack", value="a-btn", message_ts=post.ts)
        now = int(time.time())

        async def press(body_payload: dict[str, Any], secret: str, at: int) -> httpx.Response:
            body, headers = signed_interaction(body_payload, secret, at)
            return await api(service, "POST", "/v1/slack/interactions", headers, content=body)

        forged = await press(payload, "not-the-secret", now)
        stale = await press(payload, SIGNING_SECRET, now - 301)
        stranger = await press(payload | {"user": {"id": "U0STRANGER"}}, SIGNING_SECRET, now)
        still_open = await api(service, "GET", "/v1/alerts/a-btn", bearer(idp, "alerts:read"))
        pressed = await press(payload, SIGNING_SECRET, now)
        await eventually(lambda: updates_saying(fake_slack, "<@U0NURSE01>"))
        after = await api(service, "GET", "/v1/alerts/a-btn", bearer(idp, "alerts:read"))
    assert (forged.status_code, stale.status_code) == (401, 401)
    assert stranger.status_code == 200 and "not on the on-call roster" in stranger.json()["text"]
    assert still_open.json()["status"] == "open"
    assert pressed.status_code == 200
    assert (after.json()["status"], after.json()["acknowledged_by"]) == ("acknowledged", "ana")
    assert after.json()["acknowledged_via"] == "slack"
    (update,) = [u for u in fake_slack.updates if u.ts == post.ts and "<@U0NURSE01>" in str(u.body)]
    buttons = [b for b in update.body["blocks"] if b["type"] == "actions"]
    assert "Acknowledge" not in str(buttons)  # an acknowledged alert offers Escalate and Resolve


async def test_resolution_updates_every_message_sent(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio)
    async with running(config, fake_slack, twilio) as service:
        await consented(service, "pt-res")
        await put_contact(
            service, idp, "pt-res", phone=PATIENT_PHONE, preferred_channels=["sms"], language="en"
        )
        await publish_alerts(broker, alert_event(patient="pt-res", alert_id="a-res"))
        post = await main_post(fake_slack, "pt-res")
        await eventually(lambda: twilio_messages_to(twilio, ANA))
        resolved = alert_event(
            "e-res",
            patient="pt-res",
            alert_id="a-res",
            kind=AlertKind.RESOLVED,
            severity=Severity.GREEN,
            value=80,
        )
        await publish_alerts(broker, resolved)
        await eventually(
            lambda: [u for u in updates_saying(fake_slack, "Resolved") if u.ts == post.ts]
        )
        await eventually(lambda: len(twilio_messages_to(twilio, PATIENT_PHONE)) == 2)
        await eventually(lambda: len(twilio_messages_to(twilio, ANA)) == 2)
        await probe_paged(service, MAX)  # past a-res's manager level (4 s)
    patient = [m["body"] for m in twilio_messages_to(twilio, PATIENT_PHONE)]
    assert "care team has been notified" in patient[0] and "closed" in patient[1]
    assert "140" not in " ".join(patient)  # no reading on a phone
    assert "resolved" in sms_about(twilio, ANA, "a-res")[1]["body"]
    assert sms_about(twilio, MAX, "a-res") == []  # the climb stopped at the resolution


async def test_withdrawn_monitoring_consent_cancels_the_alert_in_slack(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio)
    async with running(config, fake_slack, twilio) as service:
        await of_tenant_a(service, "pt-rev")
        await publish_alerts(broker, alert_event(patient="pt-rev", alert_id="a-rev"))
        post = await main_post(fake_slack, "pt-rev")
        await publish_consent(broker, consent_event("pt-rev", Purpose.MONITORING, False))
        await eventually(
            lambda: [u for u in updates_saying(fake_slack, "consent withdrawn") if u.ts == post.ts]
        )
        detail = await api(service, "GET", "/v1/alerts/a-rev", bearer(idp, "alerts:read"))
        await probe_paged(service, ANA)  # past a-rev's agent level (2 s)
    assert detail.json()["status"] == "cancelled"
    update = next(u for u in fake_slack.updates if u.ts == post.ts)
    assert "140" not in str(update.body)  # a cancelled alert shows no reading
    assert sms_about(twilio, ANA, "a-rev") == []  # the climb never reached level 2


async def test_escalation_timers_survive_a_restart(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    # Level 2 at 6 s: time enough to stop the first notifier before it is due.
    routing = ROUTING.replace("after: 2s", "after: 6s").replace("after: 4s", "after: 60s")
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio, routing=routing)
    async with running(config, fake_slack, twilio) as first:
        await of_tenant_a(first, "pt-boot")
        await publish_alerts(broker, alert_event(patient="pt-boot", alert_id="a-boot"))
        await main_post(fake_slack, "pt-boot")  # level 1 done
    assert sms_about(twilio, ANA, "a-boot") == []  # stopped before level 2 was due
    async with running(config, fake_slack, twilio) as service:  # a new app, the same database
        await eventually(lambda: sms_about(twilio, ANA, "a-boot"), timeout=20)
        detail = await api(service, "GET", "/v1/alerts/a-boot", bearer(idp, "alerts:read"))
    assert len(sms_about(twilio, ANA, "a-boot")) == 1
    assert detail.json()["level"] == 2, detail.text
    posts = [c for c in fake_slack.calls if "pt-boot" in str(c.body) and "thread_ts" not in c.body]
    assert len(posts) == 1  # the restart did not post the alert again
