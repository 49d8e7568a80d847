"""Escalation: levels climb on time unless acknowledged, reminders repeat, state survives storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.domain import (
    AlertClosedError,
    AlertSnapshot,
    EscalationError,
    TargetKind,
    alert_from_json,
    can_escalate,
    due_steps,
    load_routing,
    next_wake,
    on_ack,
    on_cancel,
    on_escalate,
    on_oncall_post_lost,
    on_resolve,
    on_severity_raised,
    open_alert,
    patient_targeted,
    policy_from_json,
    policy_to_json,
    record_steps,
    step_level,
)
from services.notifier.domain.routing import RoutingError
from shared.events import AlertEvent, AlertKind, Severity
from tests.services.notifier.rules import HEART_RATE_HIGH

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROUTING = load_routing(
    """
agents:
  - {id: ana, name: Ana Souza, slack_user_id: U01, phone: "+5511987654321", role: agent}
  - {id: bia, name: Bia Lima, slack_user_id: U02, phone: "+5511987654322", role: manager}
severities:
  red: {slack_channel: "#red", policy: red}
  yellow: {slack_channel: "#yellow", policy: yellow}
policies:
  red:
    ack_timeout: 30s
    levels:
      - {after: 0s, notify: [oncall_slack, patient]}
      - {after: 60s, notify: [{role: agent, via: [sms, push]}]}
      - {after: 120s, notify: [{role: manager, via: [sms]}]}
  yellow:
    levels:
      - {after: 0s, notify: [oncall_slack]}
"""
)
RED = ROUTING.policies["red"]
YELLOW = ROUTING.policies["yellow"]
ANA, BIA = ROUTING.agents


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert_event(severity: Severity = Severity.RED) -> AlertEvent:
    return AlertEvent(
        event_id="e-1",
        alert_id="a-1",
        patient_id="pt-77",
        kind=AlertKind.OPENED,
        severity=severity,
        previous_severity=Severity.GREEN,
        rule=HEART_RATE_HIGH,
        readings=(),
        occurred_at=T0,
    )


def opened(severity: Severity = Severity.RED, **changes: Any) -> AlertSnapshot:
    policy = RED if severity is Severity.RED else YELLOW
    alert = open_alert(alert_event(severity), policy=policy, slack_channel="#red", now=T0)
    return alert.model_copy(update=changes)


def notified(level: int, *, last: float = 0, **changes: Any) -> AlertSnapshot:
    """An alert that reached `level`, the last notification of that level at `last` seconds."""
    return opened(level_reached=level, last_notified_at={level: at(last)}, **changes)


ACKED: dict[str, Any] = {"acknowledged_at": at(10)}


@pytest.mark.parametrize(
    ("alert", "now", "expected"),
    [
        (opened(), 0, [(1, False)]),
        (opened(), 61, [(1, False), (2, False)]),  # the scheduler was late: every due level
        (notified(1), 29, []),
        (notified(1), 30, [(1, True)]),  # unacknowledged for ack_timeout: reminder
        (notified(1, last=30), 59, []),  # reminders count from the last one
        (notified(1, last=30), 60, [(2, False)]),  # a new level beats a reminder
        (notified(2, last=60), 89, []),
        (notified(3, last=120), 150, [(3, True)]),  # the top level keeps reminding
        (notified(1, **ACKED), 39, []),  # ack stops the climb and the reminders ...
        (notified(1, **ACKED), 40, [(1, True)]),  # ... until unresolved ack_timeout after the ack
        (notified(2, last=60, **ACKED), 40, [(2, True)]),  # the current level, not level 1
        (notified(1, **ACKED, policy=RED.model_copy(update={"ack_timeout": None})), 10_000, []),
        (notified(1, resolved_at=at(5)), 10_000, []),
        (notified(1, cancelled_at=at(5)), 10_000, []),
        (notified(1, forced_level=2), 5, [(2, False)]),  # Escalate button: next level now
        (notified(1, forced_level=2, **ACKED), 5, [(2, False)]),  # even after an ack
        (opened(Severity.YELLOW, level_reached=1), 10_000, []),  # yellow never escalates
    ],
)
def test_due_steps(alert: AlertSnapshot, now: float, expected: list[tuple[int, bool]]) -> None:
    assert [(s.level, s.renotify) for s in due_steps(alert, at(now))] == expected


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        (opened(), 0),
        (notified(1), 30),  # reminder before level 2
        (notified(1, last=40), 60),  # level 2 before the next reminder
        (notified(3, last=120), 150),
        (notified(1, forced_level=2, **ACKED), 0),  # a pending Escalate: at once
        (notified(1, **ACKED), 40),  # the ack times out 30 s after it was given
        (notified(1, **ACKED, policy=RED.model_copy(update={"ack_timeout": None})), None),
        (notified(1, resolved_at=at(5)), None),
        (notified(1, cancelled_at=at(5)), None),
        (opened(Severity.YELLOW, level_reached=1), None),
        (notified(3, last=120, policy=RED.model_copy(update={"ack_timeout": None})), None),
    ],
)
def test_next_wake(alert: AlertSnapshot, expected: float | None) -> None:
    assert next_wake(alert) == (None if expected is None else at(expected))


def test_a_scheduler_driven_only_by_next_wake_sends_every_step_once_in_order() -> None:
    alert, sent = opened(), []
    while (wake := next_wake(alert)) is not None and wake <= at(150):
        steps = due_steps(alert, wake)
        assert steps, f"woken at {wake} for nothing"
        sent += [(int((wake - T0).total_seconds()), s.level, s.renotify) for s in steps]
        alert = record_steps(alert, steps, now=wake)
    assert sent == [
        (0, 1, False),
        (30, 1, True),
        (60, 2, False),
        (90, 2, True),
        (120, 3, False),
        (150, 3, True),
    ]


def test_reminders_never_repeat_the_patient_auto_response() -> None:
    (step,) = due_steps(notified(1), at(30))
    assert [t.kind for t in step.targets] == [TargetKind.ONCALL_SLACK]


def test_each_reminder_has_its_own_event_name_and_a_retry_repeats_it() -> None:
    first = due_steps(notified(1), at(30))[0]
    assert first.event == due_steps(notified(1), at(31))[0].event  # same step, retried later
    second = due_steps(notified(1, last=30), at(60))[0]
    assert (second.event, due_steps(opened(), at(0))[0].event) == ("red.level2", "red.level1")
    assert first.event != due_steps(notified(1, last=31), at(61))[0].event


def test_ack_stops_the_climb_and_keeps_who_acked_first() -> None:
    alert = on_ack(notified(1), ANA, now=at(10))
    # the climb stops: nothing is due before the ack times out (ack_timeout 30 s after the ack)
    assert (due_steps(alert, at(39)), next_wake(alert)) == ([], at(40))
    again = on_ack(alert, BIA, now=at(20))
    assert again.acknowledged_by is not None
    assert (again.acknowledged_by.agent_id, again.acknowledged_by.slack_user_id) == ("ana", "U01")
    assert again.acknowledged_at == at(10)


@pytest.mark.parametrize("closed", [{"resolved_at": at(5)}, {"cancelled_at": at(5)}])
def test_a_closed_alert_cannot_be_acked_or_escalated(closed: dict[str, Any]) -> None:
    alert = notified(1, **closed)
    with pytest.raises(AlertClosedError):
        on_ack(alert, ANA, now=at(10))
    with pytest.raises(AlertClosedError):
        on_escalate(alert)


def test_escalate_jumps_to_the_next_level_once_then_the_climb_resumes_on_time() -> None:
    alert = on_escalate(on_escalate(notified(1)))  # double click: one level only
    assert [s.level for s in due_steps(alert, at(5))] == [2]
    alert = record_steps(alert, due_steps(alert, at(5)), now=at(5))
    assert due_steps(alert, at(34)) == []  # reminders count from the escalation
    assert [(s.level, s.renotify) for s in due_steps(alert, at(35))] == [(2, True)]
    assert [(s.level, s.renotify) for s in due_steps(alert, at(120))] == [(3, False)]


def test_escalate_at_the_highest_level_is_refused() -> None:
    alert = notified(3, last=120)
    assert not can_escalate(alert)
    with pytest.raises(EscalationError, match="highest level"):
        on_escalate(alert)


def test_a_yellow_alert_raised_to_red_starts_the_red_policy_from_that_moment() -> None:
    yellow = on_ack(opened(Severity.YELLOW, level_reached=1), ANA, now=at(5))
    red = on_severity_raised(yellow, Severity.RED, policy=RED, slack_channel="#red", now=at(100))
    assert (red.severity, red.policy, red.opened_at, red.acknowledged) == (
        Severity.RED,
        RED,
        at(100),
        False,
    )
    assert [s.level for s in due_steps(red, at(100))] == [1]
    yellow_level_1 = due_steps(opened(Severity.YELLOW), at(0))[0].event
    assert due_steps(red, at(100))[0].event != yellow_level_1  # not deduplicated away
    assert [s.level for s in due_steps(record_steps(red, [], now=at(100)), at(160))] == [1, 2]


@pytest.mark.parametrize("severity", [Severity.RED, Severity.YELLOW, Severity.GREEN])
def test_a_severity_that_is_not_higher_changes_nothing(severity: Severity) -> None:
    alert = notified(1)
    assert (
        on_severity_raised(alert, severity, policy=YELLOW, slack_channel="#y", now=at(9)) == alert
    )


def test_resolve_records_who_and_is_idempotent() -> None:
    alert = on_resolve(notified(2, last=60), now=at(70), by=BIA)
    assert alert.resolved_by is not None and alert.resolved_by.slack_user_id == "U02"
    assert on_resolve(alert, now=at(80)) == alert
    assert on_resolve(notified(1), now=at(70)).resolved_by is None  # resolved by the rules


def test_cancel_wins_over_a_later_resolve() -> None:
    alert = on_cancel(notified(1), now=at(5))
    assert on_resolve(alert, now=at(6)) == alert
    assert (alert.cancelled_at, alert.resolved_at, next_wake(alert)) == (at(5), None, None)


@pytest.mark.parametrize(("level", "targeted"), [(0, False), (1, True), (3, True)])
def test_patient_targeted_says_whether_a_resolution_message_is_due(
    level: int, *, targeted: bool
) -> None:
    assert patient_targeted(notified(level)) is targeted


def test_the_policy_snapshot_round_trips_through_json_in_the_routing_shape() -> None:
    text = policy_to_json(RED)
    assert '"ack_timeout":"30s"' in text and '{"role":"agent","via":["sms","push"]}' in text
    assert policy_from_json(text) == RED


def test_a_corrupt_stored_policy_is_refused_naming_the_field() -> None:
    with pytest.raises(RoutingError, match=r"levels\[0\]\.after"):
        policy_from_json('{"levels": [{"after": "soon", "notify": ["patient"]}]}')


def test_the_whole_alert_state_round_trips_through_json() -> None:
    alert = on_ack(on_escalate(notified(1, last=30)), ANA, now=at(40))
    assert alert_from_json(alert.model_dump_json()) == alert


@pytest.mark.parametrize(
    ("alert", "post_level", "forced"),
    [
        (notified(1), 1, 2),  # nobody saw level 1 in Slack: level 2 is due now
        (notified(2, last=60), 2, 3),  # a level-2 reminder post died: the manager now
        (notified(2, last=60), 1, 0),  # a late death of level 1's post: level 2 already went
        (notified(1, **ACKED), 1, 0),  # acknowledged: someone is on it
        (notified(1, resolved_at=at(5)), 1, 0),
        (notified(3, last=120), 3, 0),  # nothing above: only the ops notice is left
        (notified(1, forced_level=2), 1, 2),  # already forced: unchanged
        (opened(Severity.YELLOW, level_reached=1), 1, 0),  # yellow never escalates
    ],
)
def test_a_lost_oncall_post_makes_the_next_level_due_now(
    alert: AlertSnapshot, post_level: int, forced: int
) -> None:
    after = on_oncall_post_lost(alert, level=post_level)
    assert after.forced_level == forced
    if forced > alert.level_reached:
        assert [s.level for s in due_steps(after, at(1))] == [forced]


@pytest.mark.parametrize(
    ("event", "level"),
    [
        ("red.level1", 1),
        ("red.level12", 12),
        ("red.level2.renotify.20261123T120030Z", 2),
        ("red.resolved", None),
        ("ops.a-1.red.level1x", None),
    ],
)
def test_step_level_reads_the_level_of_a_step_event(event: str, level: int | None) -> None:
    assert step_level(event) == level


def test_an_ack_not_resolved_within_ack_timeout_retriggers_the_current_level() -> None:
    acked = on_ack(notified(1), ANA, now=at(10))
    (step,) = due_steps(acked, at(40))
    assert (step.level, step.retrigger, step.renotify) == (1, True, True)
    assert [t.kind for t in step.targets] == [TargetKind.ONCALL_SLACK]  # no 2nd patient message
    assert step.event == "red.level1.retrigger.20261123T120040Z"  # not a reminder's key
    after = record_steps(acked, [step], now=at(40))
    assert not after.acknowledged and after.acknowledged_by is None
    assert after.retriggered_at == at(40) and after.last_notified_at[1] == at(40)
    assert next_wake(after) == at(60)  # the climb resumes: level 2 at its delay
    assert on_ack(after, BIA, now=at(45)).acknowledged_by.agent_id == "bia"  # a new ack holds


def test_a_resolved_or_cancelled_ack_never_retriggers() -> None:
    acked = on_ack(notified(1), ANA, now=at(10))
    for closed in (on_resolve(acked, now=at(20)), on_cancel(acked, now=at(20))):
        assert due_steps(closed, at(10_000)) == [] and next_wake(closed) is None


def test_a_scheduler_driven_only_by_next_wake_retriggers_a_forgotten_ack() -> None:
    alert, sent = opened(), []
    while (wake := next_wake(alert)) is not None and wake <= at(130):
        steps = due_steps(alert, wake)
        assert steps, f"woken at {wake} for nothing"
        sent += [(int((wake - T0).total_seconds()), s.level, s.retrigger) for s in steps]
        alert = record_steps(alert, steps, now=wake)
        if wake == T0:
            alert = on_ack(alert, ANA, now=at(5))  # acked at once, then forgotten
    assert sent == [
        (0, 1, False),
        (35, 1, True),  # ack timed out: re-triggered, the ack is gone
        (60, 2, False),  # so the climb goes on
        (90, 2, False),  # and reminders repeat while unacknowledged
        (120, 3, False),
    ]
