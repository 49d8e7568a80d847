"""What people read: patient templates, agent texts, the Slack message in every state, threads."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.domain import (
    ACK_ACTION,
    ESCALATE_ACTION,
    PATIENT_TEMPLATES,
    RESOLVE_ACTION,
    Actor,
    AlertSnapshot,
    PatientMessageKind,
    Transition,
    agent_message,
    load_routing,
    on_ack,
    on_cancel,
    on_escalate,
    on_resolve,
    open_alert,
    patient_alert_kind,
    patient_message,
    record_steps,
    slack_alert_message,
    thread_reply_text,
)
from services.notifier.domain.escalation import due_steps
from services.notifier.domain.slack_alert import status_text
from shared.events import AlertEvent, AlertKind, Severity, TriggerReading
from tests.services.notifier.rules import HEART_RATE_HIGH

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROUTING = load_routing(
    """
agents:
  - {id: ana, name: Ana Souza, slack_user_id: U0ANA, phone: "+5511987654321", role: agent}
  - {id: bia, name: Bia Lima, slack_user_id: U0BIA, phone: "+5511987654322", role: manager}
severities:
  red: {slack_channel: "#red", policy: red}
  yellow: {slack_channel: "#yellow", policy: red}
policies:
  red:
    levels:
      - {after: 0s, notify: [oncall_slack, patient]}
      - {after: 60s, notify: [{role: agent, via: [sms, push]}]}
      - {after: 120s, notify: [{role: manager, via: [sms]}]}
"""
)
ANA, BIA = ROUTING.agents
EVENT = AlertEvent(
    event_id="e-1",
    alert_id="a-1",
    patient_id="pt-77",
    kind=AlertKind.OPENED,
    severity=Severity.RED,
    previous_severity=Severity.GREEN,
    rule=HEART_RATE_HIGH,
    readings=(
        TriggerReading(reading_id="r", metric="heart_rate", value=131, unit="/min", measured_at=T0),
    ),
    occurred_at=T0,
)
DASH = "https://dash.example/alerts/a-1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reached(level: int) -> AlertSnapshot:
    alert = open_alert(EVENT, policy=ROUTING.policies["red"], slack_channel="#red", now=T0)
    return record_steps(alert, due_steps(alert, at(60 * (level - 1))), now=at(60 * (level - 1)))


OPEN = reached(1)
ESCALATED = reached(2)
TOP = reached(3)
ACKED = on_ack(OPEN, ANA, now=at(10))
RESOLVED_BY_AGENT = on_resolve(ACKED, now=at(20), by=BIA)
RESOLVED_BY_RULES = on_resolve(OPEN, now=at(20))
CANCELLED = on_cancel(OPEN, now=at(20))


def patient_texts() -> list[tuple[str, str]]:
    return [
        (lang, text)
        for lang, kinds in PATIENT_TEMPLATES.items()
        for message in kinds.values()
        for text in (message.title, message.body)
    ]


@pytest.mark.parametrize("language", ["pt-BR", "en"])
@pytest.mark.parametrize("kind", list(PatientMessageKind))
def test_every_patient_template_exists_in_both_languages(
    language: Any, kind: PatientMessageKind
) -> None:
    message = patient_message(kind, language)
    assert message.title.strip() and message.body.strip()


def test_portuguese_is_the_default_and_points_to_samu() -> None:
    message = patient_message(PatientMessageKind.RED_ALERT)
    assert message == patient_message(PatientMessageKind.RED_ALERT, "pt-BR")
    assert "192" in message.body and "SAMU" in message.body


def test_english_points_to_the_local_emergency_number_not_to_samu() -> None:
    body = patient_message(PatientMessageKind.RED_ALERT, "en").body
    assert "local emergency number" in body and "192" not in body


@pytest.mark.parametrize(("language", "text"), patient_texts())
def test_patient_texts_carry_no_clinical_value(language: str, text: str) -> None:
    assert set(re.findall(r"\d+", text)) <= {"192"}
    for word in ("131", "/min", "bpm", "%", "mg/dL", "Heart rate", "frequência", "{", "}"):
        assert word not in text


@pytest.mark.parametrize(
    ("severity", "kind"),
    [
        (Severity.RED, PatientMessageKind.RED_ALERT),
        (Severity.YELLOW, PatientMessageKind.YELLOW_ALERT),
    ],
)
def test_the_patient_template_follows_the_severity(
    severity: Severity, kind: PatientMessageKind
) -> None:
    assert patient_alert_kind(severity) is kind


def test_agent_text_has_ids_severity_metric_and_link_but_no_value_name_or_phone() -> None:
    message = agent_message(ESCALATED, level=2, dashboard_url=DASH)
    for fragment in ("RED", "a-1", "pt-77", "Heart rate", DASH, "Level 2 of 3"):
        assert fragment in message.body
    for secret in ("131", "Ana", "Bia", "+5511"):
        assert secret not in message.body + message.title
    reminder = agent_message(ESCALATED, level=2, dashboard_url=DASH, reminder=True)
    assert reminder.body.startswith("Reminder: ")


def buttons(body: dict[str, Any]) -> list[str]:
    actions = [b for b in body["blocks"] if b["type"] == "actions"]
    return [e["action_id"] for a in actions for e in a["elements"]]


@pytest.mark.parametrize(
    ("alert", "actions", "status", "colour"),
    [
        (OPEN, [ACK_ACTION, ESCALATE_ACTION, RESOLVE_ACTION], "Open, not acknowledged", "#D32F2F"),
        (ESCALATED, [ACK_ACTION, ESCALATE_ACTION, RESOLVE_ACTION], "level 2 of 3", "#D32F2F"),
        (TOP, [ACK_ACTION, RESOLVE_ACTION], "Escalated to level 3 of 3", "#D32F2F"),
        (ACKED, [ESCALATE_ACTION, RESOLVE_ACTION], "Acknowledged by <@U0ANA>", "#D32F2F"),
        (RESOLVED_BY_AGENT, [], "Resolved by <@U0BIA>", "#2E7D32"),
        (RESOLVED_BY_RULES, [], "Resolved <!date^", "#2E7D32"),
        (CANCELLED, [], "Cancelled", "#9E9E9E"),
    ],
)
def test_the_slack_message_shows_the_state_and_only_the_buttons_that_apply(
    alert: AlertSnapshot, actions: list[str], status: str, colour: str
) -> None:
    body = slack_alert_message(alert, EVENT, dashboard_url=DASH)
    assert buttons(body) == actions
    assert status in json.dumps(body)
    assert body["attachments"][0]["color"] == colour
    assert DASH in json.dumps(body) and "pt-77" in json.dumps(body)
    assert "Ana" not in json.dumps(body) and "Bia" not in json.dumps(body)


def test_an_open_alert_shows_metric_value_threshold_and_time_with_buttons_carrying_the_id() -> None:
    body = slack_alert_message(OPEN, EVENT, dashboard_url=DASH)
    dumped = json.dumps(body)
    for fragment in (":red_circle: RED", "Heart rate", "131 /min", "> 120 /min", "2026-11-23"):
        assert fragment in dumped
    actions = next(b for b in body["blocks"] if b["type"] == "actions")
    assert {e["value"] for e in actions["elements"]} == {"a-1"}
    assert "channel" not in body  # the adapter adds it, for a post or a chat.update


def test_a_cancelled_alert_shows_no_reading_at_all() -> None:
    dumped = json.dumps(slack_alert_message(CANCELLED, EVENT, dashboard_url=DASH))
    for reading in ("131", "/min", "Heart rate", "Measured"):
        assert reading not in dumped
    assert "a-1" in dumped and "consent withdrawn" in dumped


def test_escalating_updates_the_message_with_the_new_level() -> None:
    escalated = record_steps(on_escalate(OPEN), due_steps(on_escalate(OPEN), at(5)), now=at(5))
    assert "Escalated to level 2 of 3" in json.dumps(
        slack_alert_message(escalated, EVENT, dashboard_url=DASH)
    )


@pytest.mark.parametrize(
    ("transition", "alert", "expected"),
    [
        (Transition.ACKNOWLEDGED, ACKED, "Acknowledged by <@U0ANA>"),
        (Transition.ESCALATED, ESCALATED, "Escalated to level 2 of 3: agent by sms/push"),
        (Transition.ESCALATED, TOP, "level 3 of 3: manager by sms"),
        (Transition.REMINDED, OPEN, "<!here> :bell: Still not acknowledged (level 1 of 3)"),
        (Transition.SEVERITY_RAISED, OPEN, "Severity raised to RED"),
        (Transition.RESOLVED, RESOLVED_BY_AGENT, "Resolved by <@U0BIA>"),
        (Transition.RESOLVED, RESOLVED_BY_RULES, "Resolved. Escalation stopped."),
        (Transition.CANCELLED, CANCELLED, "Cancelled: consent withdrawn"),
    ],
)
def test_thread_replies_say_what_changed(
    transition: Transition, alert: AlertSnapshot, expected: str
) -> None:
    text = thread_reply_text(transition, alert)
    assert expected in text
    assert "131" not in text and "Ana" not in text


def acked_by(actor: Actor) -> AlertSnapshot:
    """OPEN acknowledged by someone, as the API records a token subject."""
    return OPEN.model_copy(update={"acknowledged_by": actor, "acknowledged_at": at(10)})


def resolved_by(actor: Actor) -> AlertSnapshot:
    return RESOLVED_BY_RULES.model_copy(update={"resolved_by": actor})


@pytest.mark.parametrize(
    ("alert", "transition", "status", "reply"),
    [
        (
            acked_by(Actor(agent_id="ana", slack_user_id="U0ANA")),
            Transition.ACKNOWLEDGED,
            "Acknowledged by <@U0ANA> <!date^",
            ":eyes: Acknowledged by <@U0ANA>.",
        ),
        (  # an API ack by a token subject who is not in the routing file: no Slack user
            acked_by(Actor(agent_id="user-1")),
            Transition.ACKNOWLEDGED,
            "Acknowledged by user-1 <!date^",
            ":eyes: Acknowledged by user-1.",
        ),
        (
            resolved_by(Actor(agent_id="user-1")),
            Transition.RESOLVED,
            "Resolved by user-1 <!date^",
            ":white_check_mark: Resolved by user-1. Escalation stopped.",
        ),
        (  # an id never becomes a mention, a channel ping or a link
            acked_by(Actor(agent_id="<!channel> & <https://x.example|y>")),
            Transition.ACKNOWLEDGED,
            "Acknowledged by &lt;!channel&gt; &amp; &lt;https://x.example|y&gt; <!date^",
            ":eyes: Acknowledged by &lt;!channel&gt; &amp; &lt;https://x.example|y&gt;.",
        ),
    ],
)
def test_who_acted_is_a_mention_or_else_their_id(
    alert: AlertSnapshot, transition: Transition, status: str, reply: str
) -> None:
    assert status_text(alert).startswith(status)
    assert thread_reply_text(transition, alert) == reply
    assert status in json.dumps(slack_alert_message(alert, EVENT, dashboard_url=DASH))


def test_a_snapshot_stored_before_slack_user_id_was_optional_still_loads() -> None:
    stored = acked_by(Actor(agent_id="ana", slack_user_id="U0ANA")).model_dump_json()
    assert AlertSnapshot.model_validate_json(stored).acknowledged_by == Actor(
        agent_id="ana", slack_user_id="U0ANA"
    )
    bare = json.loads(stored)
    bare["acknowledged_by"].pop("slack_user_id")
    assert AlertSnapshot.model_validate(bare).acknowledged_by == Actor(agent_id="ana")
