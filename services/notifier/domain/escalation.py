"""Escalation state machine: which levels are due, when to look again, and what ack/resolve do.

The scheduler stores an `AlertSnapshot` per alert with `next_wake(alert)`; when that time comes it
calls `due_steps(alert, now)`, queues the deliveries, then stores `record_steps(...)`, all in one
transaction. Nothing sleeps in memory, so a restart loses nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import Field, ValidationError

from services.notifier.domain.common import Strict, describe_validation_error
from services.notifier.domain.routing import Agent, Policy, RoutingError, Target, TargetKind
from services.notifier.domain.slack_blocks import alert_subject
from services.notifier.errors import NotifierError
from shared.events import AlertEvent, Severity, UtcDatetime

_RANK = {Severity.GREEN: 0, Severity.YELLOW: 1, Severity.RED: 2}
_LEVEL_IN_EVENT = re.compile(r"\.level(\d+)(?:\.|$)")


class EscalationError(NotifierError):
    """The requested transition is not possible in the alert's state."""


class AlertClosedError(EscalationError):
    """The alert is already resolved or cancelled."""


class Transition(StrEnum):
    """What happened to an alert after it opened; names the Slack update and thread reply."""

    ESCALATED = "escalated"  # a further level was notified
    SEVERITY_RAISED = "severity_raised"  # yellow -> red: escalation restarted under red's policy
    REMINDED = "reminded"  # ack timeout passed (unacked, or acked and not resolved: re-triggered)
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"  # consent revoked


class Actor(Strict):
    """Who acted on an alert: the routing agent id (or the token subject of someone who is not in
    the routing file), and the Slack user id for mentions when the person has one."""

    agent_id: str
    slack_user_id: str | None = None


class AlertSnapshot(Strict):
    """An alert's escalation state, stored as JSON (`model_dump_json` / `alert_from_json`).

    Levels are numbered from 1; `level_reached` is the highest level notified (0: none yet).
    `forced_level`: levels up to it are due now whatever their delay (the Escalate button).
    `last_notified_at`: per level, when it was last notified (first time or re-notification).
    """

    alert_id: str
    patient_id: str
    severity: Severity
    subject: str = Field(description="What the alert is about (metric or rule), never a value.")
    slack_channel: str
    policy: Policy
    opened_at: UtcDatetime = Field(description="When the escalation clock started.")
    level_reached: int = Field(0, ge=0)
    forced_level: int = Field(0, ge=0)
    last_notified_at: dict[int, UtcDatetime] = Field(default_factory=dict)
    acknowledged_by: Actor | None = None
    acknowledged_at: UtcDatetime | None = None
    retriggered_at: UtcDatetime | None = Field(
        None, description="When an ack last timed out (not resolved within ack_timeout)."
    )
    resolved_by: Actor | None = None
    resolved_at: UtcDatetime | None = None
    cancelled_at: UtcDatetime | None = None

    @property
    def closed(self) -> bool:
        """Whether the alert is resolved or cancelled."""
        return self.resolved_at is not None or self.cancelled_at is not None

    @property
    def acknowledged(self) -> bool:
        """Whether someone acknowledged the alert."""
        return self.acknowledged_at is not None


@dataclass(frozen=True)
class Step:
    """One level's notification that is due: what the delivery planner turns into sends."""

    alert_id: str
    patient_id: str
    severity: Severity
    slack_channel: str
    level: int
    of_levels: int
    targets: tuple[Target, ...]
    due_at: datetime
    renotify: bool = False
    retrigger: bool = False  # the ack timed out: the ack is cleared, the level notified again

    @property
    def event(self) -> str:
        """Name of this notification in idempotency keys: stable across retries of one step.

        The severity is part of it: once a yellow alert turns red, red's level 1 is a new send.
        """
        name = f"{self.severity.value}.level{self.level}"
        if self.retrigger:
            return f"{name}.retrigger.{self.due_at:%Y%m%dT%H%M%SZ}"
        return f"{name}.renotify.{self.due_at:%Y%m%dT%H%M%SZ}" if self.renotify else name


def open_alert(
    event: AlertEvent, *, policy: Policy, slack_channel: str, now: datetime
) -> AlertSnapshot:
    """Start escalating an alert under a copy of its severity's policy; the clock starts at now."""
    return AlertSnapshot(
        alert_id=event.alert_id,
        patient_id=event.patient_id,
        severity=event.severity,
        subject=alert_subject(event),
        slack_channel=slack_channel,
        policy=policy,
        opened_at=now,
    )


def on_severity_raised(
    alert: AlertSnapshot, severity: Severity, *, policy: Policy, slack_channel: str, now: datetime
) -> AlertSnapshot:
    """Restart escalation under the new severity's policy (yellow -> red); lower or equal: no-op.

    The clock restarts at now and an acknowledgement of the milder alert no longer holds.
    """
    if alert.closed or _RANK[severity] <= _RANK[alert.severity]:
        return alert
    return alert.model_copy(
        update={
            "severity": severity,
            "policy": policy,
            "slack_channel": slack_channel,
            "opened_at": now,
            "level_reached": 0,
            "forced_level": 0,
            "last_notified_at": {},
            "acknowledged_by": None,
            "acknowledged_at": None,
        }
    )


def due_steps(alert: AlertSnapshot, now: datetime) -> list[Step]:
    """Return the levels due and not yet notified, or else a due re-trigger or re-notification.

    Unacknowledged, the current level is reminded every ack_timeout; acknowledged and not resolved
    within ack_timeout of the ack, the alert re-triggers (PagerDuty's acknowledgement_timeout):
    the current level is notified again and `record_steps` clears the ack.
    """
    if alert.closed:
        return []
    levels = alert.policy.levels
    steps: list[Step] = []
    for number in range(alert.level_reached + 1, len(levels) + 1):
        due_at = alert.opened_at + levels[number - 1].after
        if number <= alert.forced_level:
            steps.append(_step(alert, number, due_at=min(due_at, now)))
        elif not alert.acknowledged and due_at <= now:
            steps.append(_step(alert, number, due_at=due_at))
        else:
            break
    if steps:
        return steps
    retrigger_at = _retrigger_at(alert)
    if retrigger_at is not None and retrigger_at <= now:
        return [_step(alert, alert.level_reached, due_at=retrigger_at, retrigger=True)]
    renotify_at = _renotify_at(alert)
    if renotify_at is not None and renotify_at <= now:
        return [_step(alert, alert.level_reached, due_at=renotify_at, renotify=True)]
    return []


def record_steps(alert: AlertSnapshot, steps: list[Step], *, now: datetime) -> AlertSnapshot:
    """Return the alert with the steps marked as notified at now (a re-trigger clears the ack)."""
    if not steps:
        return alert
    notified = dict(alert.last_notified_at)
    for step in steps:
        notified[step.level] = now
    reached = max(alert.level_reached, *(step.level for step in steps))
    update: dict[str, object] = {"level_reached": reached, "last_notified_at": notified}
    if any(step.retrigger for step in steps):
        update |= {"acknowledged_by": None, "acknowledged_at": None, "retriggered_at": now}
    return alert.model_copy(update=update)


def next_wake(alert: AlertSnapshot) -> datetime | None:
    """Return when the scheduler must look again (a past time means at once), or None if never."""
    if alert.closed:
        return None
    levels = alert.policy.levels
    if alert.forced_level > alert.level_reached:
        return alert.opened_at
    if alert.acknowledged:
        return _retrigger_at(alert)
    wakes = [] if alert.level_reached >= len(levels) else [_level_due_at(alert)]
    renotify_at = _renotify_at(alert)
    if renotify_at is not None:
        wakes.append(renotify_at)
    return min(wakes, default=None)


def on_ack(alert: AlertSnapshot, agent: Agent, *, now: datetime) -> AlertSnapshot:
    """Acknowledge: the automatic climb and re-notifications stop; a second ack keeps the first."""
    if alert.closed:
        raise AlertClosedError(f"alert {alert.alert_id} is closed")
    if alert.acknowledged:
        return alert
    return alert.model_copy(update={"acknowledged_by": _actor(agent), "acknowledged_at": now})


def on_resolve(alert: AlertSnapshot, *, now: datetime, by: Agent | None = None) -> AlertSnapshot:
    """Resolve (by an agent, or by the rules when `by` is None); a closed alert stays as it is."""
    if alert.closed:
        return alert
    return alert.model_copy(
        update={"resolved_at": now, "resolved_by": None if by is None else _actor(by)}
    )


def on_cancel(alert: AlertSnapshot, *, now: datetime) -> AlertSnapshot:
    """Cancel because the patient revoked consent: nothing more is sent; a closed alert stays."""
    if alert.closed:
        return alert
    return alert.model_copy(update={"cancelled_at": now})


def can_escalate(alert: AlertSnapshot) -> bool:
    """Whether the Escalate button has a next level to jump to."""
    pending = max(alert.level_reached, alert.forced_level)
    return not alert.closed and pending < len(alert.policy.levels)


def on_escalate(alert: AlertSnapshot) -> AlertSnapshot:
    """Make the next level due now (Escalate button), even after an ack; repeats are idempotent.

    A second press before the scheduler ran targets the same level, so a double click or a
    redelivered Slack action does not skip a level.
    """
    if alert.closed:
        raise AlertClosedError(f"alert {alert.alert_id} is closed")
    if alert.forced_level > alert.level_reached:
        return alert
    if not can_escalate(alert):
        raise EscalationError(f"alert {alert.alert_id} is already at its highest level")
    return alert.model_copy(update={"forced_level": alert.level_reached + 1})


def on_oncall_post_lost(alert: AlertSnapshot, *, level: int) -> AlertSnapshot:
    """The on-call channel's post of `level` was given up on (token revoked, Slack down past the
    retries): nobody saw it, so make the next level due now, as the Escalate button would.

    Unchanged when closed, acknowledged (someone is on it), already beyond `level`, already
    forced, or at the highest level (the ops notice is all that is left).
    """
    if alert.closed or alert.acknowledged or not can_escalate(alert):
        return alert
    if alert.level_reached > level or alert.forced_level > alert.level_reached:
        return alert
    return on_escalate(alert)


def step_level(event: str) -> int | None:
    """The level number in a step's event name (`red.level1`, `red.level2.renotify.…`)."""
    match = _LEVEL_IN_EVENT.search(event)
    return int(match.group(1)) if match else None


def patient_targeted(alert: AlertSnapshot) -> bool:
    """Whether a level already notified included the patient (so a resolution message is due)."""
    levels = alert.policy.levels[: alert.level_reached]
    return any(t.kind is TargetKind.PATIENT for level in levels for t in level.notify)


def policy_to_json(policy: Policy) -> str:
    """Serialise a policy in the routing file's own shape (durations like 4h) for storage."""
    return policy.model_dump_json()


def policy_from_json(text: str | bytes) -> Policy:
    """Read a stored policy back, or raise RoutingError naming the field."""
    try:
        return Policy.model_validate_json(text)
    except ValidationError as exc:
        raise RoutingError(f"stored policy: {describe_validation_error(exc)}") from None


def alert_from_json(text: str | bytes) -> AlertSnapshot:
    """Read a stored alert snapshot back (written with `alert.model_dump_json()`)."""
    return AlertSnapshot.model_validate_json(text)


def _step(
    alert: AlertSnapshot,
    number: int,
    *,
    due_at: datetime,
    renotify: bool = False,
    retrigger: bool = False,
) -> Step:
    renotify = renotify or retrigger
    return Step(
        alert_id=alert.alert_id,
        patient_id=alert.patient_id,
        severity=alert.severity,
        slack_channel=alert.slack_channel,
        level=number,
        of_levels=len(alert.policy.levels),
        targets=_renotifiable(alert, number)
        if renotify
        else alert.policy.levels[number - 1].notify,
        due_at=due_at,
        renotify=renotify,
        retrigger=retrigger,
    )


def _level_due_at(alert: AlertSnapshot) -> datetime:
    return alert.opened_at + alert.policy.levels[alert.level_reached].after


def _renotifiable(alert: AlertSnapshot, number: int) -> tuple[Target, ...]:
    # The patient's automatic response is sent once per alert, never repeated as a reminder.
    level = alert.policy.levels[number - 1]
    return tuple(t for t in level.notify if t.kind is not TargetKind.PATIENT)


def _retrigger_at(alert: AlertSnapshot) -> datetime | None:
    timeout = alert.policy.ack_timeout
    if alert.acknowledged_at is None or timeout is None or alert.level_reached == 0:
        return None
    return alert.acknowledged_at + timeout


def _renotify_at(alert: AlertSnapshot) -> datetime | None:
    timeout = alert.policy.ack_timeout
    if alert.acknowledged or timeout is None or alert.level_reached == 0:
        return None
    if not _renotifiable(alert, alert.level_reached):
        return None
    last = alert.last_notified_at.get(alert.level_reached)
    if last is None:  # not recorded (hand-built state): count from when the level was due
        last = alert.opened_at + alert.policy.levels[alert.level_reached - 1].after
    return last + timeout


def _actor(agent: Agent) -> Actor:
    return Actor(agent_id=agent.id, slack_user_id=agent.slack_user_id)
