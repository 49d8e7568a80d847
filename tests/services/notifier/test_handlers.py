"""What an alert event, a timer, an ack, a consent change and an erasure queue, on a real SQLite
database with a clock the test moves (nothing is sent here: the dispatcher sends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notifier.actions import (
    AlertNotFoundError,
    Who,
    acknowledge,
    erase_patient,
    escalate,
    export_patient,
    on_consent_changed,
)
from services.notifier.adapters.scheduler import Scheduler
from services.notifier.domain import AlertClosedError
from services.notifier.handlers import ConsentNotReadyError, Notifier
from shared.events import AlertKind, Purpose, Severity
from tests.services.notifier.support import (
    Clock,
    alert_event,
    alert_row,
    consent,
    consent_event,
    feed,
    make_notifier,
    mark_sent,
    rows,
    set_contact,
    summary,
    timeline_kinds,
)

SLACK_POST = ("post", "slack", "oncall", "#care-alerts", "pending")
PATIENT_SMS = ("post", "sms", "patient", "pt-1", "pending")
ANA_SMS = ("post", "sms", "agent", "ana", "pending")
MAX_SMS = ("post", "sms", "manager", "max", "pending")
SLACK_UPDATE = ("update", "slack", "oncall", "#care-alerts", "pending")
SLACK_REPLY = ("reply", "slack", "oncall", "#care-alerts", "pending")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def n(tmp_path: Path, clock: Clock) -> Notifier:
    notifier = await make_notifier(f"sqlite:///{tmp_path}/n.db", clock)
    await set_contact(notifier)
    return notifier


async def test_a_red_alert_queues_the_slack_post_and_the_patient_message_once(n: Notifier) -> None:
    event = alert_event()
    await feed(n, event, event)  # twice in one batch
    await feed(n, event)  # and redelivered later
    assert summary(await rows(n)) == [SLACK_POST, PATIENT_SMS]
    assert (await alert_row(n)).summary()["status"] == "open"
    assert await timeline_kinds(n) == ["opened", "level_notified"]


async def test_no_alert_without_monitoring_consent(n: Notifier) -> None:
    n.consent = consent(required=True)
    await feed(n, alert_event())
    assert await rows(n) == []


async def test_the_patient_is_not_messaged_without_notifications_consent(n: Notifier) -> None:
    n.consent = consent(required=True)
    n.consent.apply(consent_event("pt-1", Purpose.MONITORING, True))
    await feed(n, alert_event())
    assert summary(await rows(n)) == [SLACK_POST]


async def test_events_wait_until_consent_is_known(n: Notifier) -> None:
    n.consent.caught_up = False
    with pytest.raises(ConsentNotReadyError):
        await feed(n, alert_event())
    assert await rows(n) == []


async def test_levels_come_due_on_the_clock_and_update_slack(n: Notifier, clock: Clock) -> None:
    scheduler = Scheduler(n, poll_s=1)
    await feed(n, alert_event())
    clock.advance(1.9)
    await scheduler.tick()
    assert len(await rows(n)) == 2  # level 2 is not due before 2 s
    clock.advance(0.1)
    await scheduler.tick()
    assert summary(await rows(n))[2:] == [ANA_SMS, SLACK_UPDATE, SLACK_REPLY]
    assert (await rows(n))[4].payload["text"].startswith(":arrow_double_up: Escalated to level 2")
    clock.advance(2)
    await scheduler.tick()
    await scheduler.tick()  # nothing due twice
    assert summary(await rows(n))[5:] == [MAX_SMS, SLACK_UPDATE, SLACK_REPLY]
    assert (await alert_row(n)).snapshot.level_reached == 3


async def test_an_ack_stops_the_climb_and_drops_pending_pages(n: Notifier, clock: Clock) -> None:
    scheduler = Scheduler(n, poll_s=1)
    await feed(n, alert_event())
    clock.advance(2)
    await scheduler.tick()
    agent = n.routing.agent_by_slack_user("U0NURSE01")
    row = await acknowledge(n, "a-1", Who("ana", "slack", agent), tenant_id=None)
    assert row.summary()["status"] == "acknowledged"
    assert row.summary()["acknowledged_via"] == "slack"
    again = await acknowledge(n, "a-1", Who("someone", "api"), tenant_id=None)
    assert again.summary()["acknowledged_by"] == "ana"  # the first ack stands
    clock.advance(29)  # past level 3's delay, within ack_timeout (30 s) of the ack
    await scheduler.tick()
    statuses = summary(await rows(n))
    assert statuses[2] == ("post", "sms", "agent", "ana", "cancelled")
    assert MAX_SMS not in statuses  # level 3 never came
    assert statuses.count(SLACK_UPDATE) == 2  # escalated, then acknowledged


async def test_a_resolved_alert_updates_everything_sent(n: Notifier, clock: Clock) -> None:
    await feed(n, alert_event())
    slack_post, patient_sms = await rows(n)
    await mark_sent(n, slack_post.id, patient_sms.id)
    clock.advance(2)
    await Scheduler(n, poll_s=1).tick()  # the agent's SMS is queued, not sent yet
    await feed(n, alert_event("e-2", kind=AlertKind.RESOLVED, severity=Severity.GREEN, value=80))
    after = await rows(n)
    assert after[2].status == "cancelled"  # the agent's page became moot
    new = summary(after[5:])
    assert new == [SLACK_UPDATE, SLACK_REPLY, ("post", "sms", "patient", "pt-1", "pending")]
    assert "encerrado" in after[-1].payload["text"]  # pt-BR "resolved" template
    assert (await alert_row(n)).summary()["status"] == "resolved"


async def test_yellow_turning_red_updates_the_post_instead_of_posting_again(n: Notifier) -> None:
    await feed(n, alert_event(severity=Severity.YELLOW))
    await mark_sent(n, (await rows(n))[0].id)
    await feed(n, alert_event("e-2", kind=AlertKind.ESCALATED, severity=Severity.RED, value=150))
    assert summary(await rows(n))[1:] == [PATIENT_SMS, SLACK_UPDATE, SLACK_REPLY]
    assert (await alert_row(n)).summary()["severity"] == "red"


async def test_withdrawn_notifications_consent_drops_pending_patient_messages(
    n: Notifier,
) -> None:
    await feed(n, alert_event())
    await on_consent_changed(consent_event("pt-1", Purpose.NOTIFICATIONS, False), n=n)
    assert summary(await rows(n)) == [SLACK_POST, ("post", "sms", "patient", "pt-1", "cancelled")]


async def test_withdrawn_monitoring_consent_cancels_the_alert(n: Notifier) -> None:
    await feed(n, alert_event())
    await mark_sent(n, (await rows(n))[0].id)
    await on_consent_changed(consent_event("pt-1", Purpose.MONITORING, False), n=n)
    assert summary(await rows(n))[1:] == [
        ("post", "sms", "patient", "pt-1", "cancelled"),
        SLACK_UPDATE,
        SLACK_REPLY,
    ]
    assert (await alert_row(n)).summary()["status"] == "cancelled"
    with pytest.raises(AlertClosedError):
        await acknowledge(n, "a-1", Who("ana", "api"), tenant_id=None)


async def test_escalate_by_hand_notifies_the_next_level_at_once(n: Notifier) -> None:
    agent = n.routing.agent_by_slack_user("U0NURSE01")
    await feed(n, alert_event())
    await mark_sent(n, (await rows(n))[0].id)
    await escalate(n, "a-1", Who("ana", "slack", agent))
    assert summary(await rows(n))[2:] == [ANA_SMS, SLACK_UPDATE, SLACK_REPLY]


async def test_another_tenants_alert_is_not_found(n: Notifier) -> None:
    n.consent.apply(consent_event("pt-1", Purpose.MONITORING, True))  # pt-1 is tenant-a's
    await feed(n, alert_event())
    with pytest.raises(AlertNotFoundError):
        await acknowledge(n, "a-1", Who("eve", "api"), tenant_id="tenant-b")


async def test_export_then_erasure(n: Notifier) -> None:
    await feed(n, alert_event())
    exported = await export_patient("pt-1", n=n)
    assert exported["contact"]["phone"] == "+5511988887777"  # type: ignore[index]
    assert [a["alert_id"] for a in exported["alerts"]] == ["a-1"]  # type: ignore[attr-defined]
    assert "deleted 1 contact row(s) and 1 alert row(s)" == await erase_patient("pt-1", n=n)
    assert await rows(n) == []
    assert await export_patient("pt-1", n=n) == {"contact": None, "alerts": []}


async def test_an_unacknowledged_level_is_notified_again_after_the_ack_timeout(
    n: Notifier, clock: Clock
) -> None:
    scheduler = Scheduler(n, poll_s=1)
    await feed(n, alert_event())
    clock.advance(4)
    await scheduler.tick()  # levels 2 and 3 at once (a late look loses nothing)
    before = len(await rows(n))
    clock.advance(29)
    await scheduler.tick()
    assert len(await rows(n)) == before  # the 30 s ack timeout has not passed yet
    clock.advance(1)
    await scheduler.tick()
    reminder = summary(await rows(n))[before:]
    assert reminder == [MAX_SMS, SLACK_UPDATE, SLACK_REPLY]
    assert "Still not acknowledged" in (await rows(n))[-1].payload["text"]
    assert (await timeline_kinds(n))[-1] == "level_reminder"
