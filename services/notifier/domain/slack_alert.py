"""Slack rendering of an alert's current state (post, then chat.update) and its thread replies.

The same function renders every state, so a chat.update after an ack, an escalation, a
resolution or a cancellation shows the whole truth. People appear as Slack mentions (`<@U…>`),
never by name; someone without a Slack user id (an API ack by a token subject who is not in the
routing file) appears by that id. A cancelled alert (consent revoked) shows no reading at all.
"""

from __future__ import annotations

from typing import Any

from services.notifier.domain.escalation import Actor, AlertSnapshot, Transition, can_escalate
from services.notifier.domain.routing import Target, TargetKind
from services.notifier.domain.slack_blocks import (
    SEVERITY_STYLE,
    dashboard_block,
    event_fields,
    fields_block,
    header_block,
    slack_time,
    summary_text,
)
from shared.events import AlertEvent

ACK_ACTION = "alert_ack"
ESCALATE_ACTION = "alert_escalate"
RESOLVE_ACTION = "alert_resolve"
RESOLVED_COLOUR = "#2E7D32"
CANCELLED_COLOUR = "#9E9E9E"


def slack_alert_message(
    alert: AlertSnapshot, event: AlertEvent, *, dashboard_url: str
) -> dict[str, Any]:
    """Build the Block Kit body (text, blocks, attachments; no channel) for the alert's state."""
    if alert.cancelled_at is not None:
        return _cancelled_message(alert, dashboard_url)
    colour, emoji = SEVERITY_STYLE[alert.severity]
    headline = f"{emoji} {alert.severity.value.upper()}: {alert.subject}"
    status = status_text(alert)
    blocks = [
        header_block(
            f":white_check_mark: Resolved · {headline}" if alert.resolved_at else headline
        ),
        fields_block([*event_fields(event), ("Status", status)]),
        dashboard_block(dashboard_url),
    ]
    if not alert.closed:
        blocks.append(actions_block(alert))
    colour = RESOLVED_COLOUR if alert.resolved_at else colour
    return {
        "text": f"{emoji} {summary_text(event)} · {status}",
        "blocks": blocks,
        "attachments": [{"color": colour, "fallback": summary_text(event), "blocks": []}],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def status_text(alert: AlertSnapshot) -> str:
    """Describe the alert's state in one line: open, escalated, acknowledged, resolved, cancelled."""
    levels = len(alert.policy.levels)
    if alert.cancelled_at is not None:
        return f"Cancelled {slack_time(alert.cancelled_at)}: consent withdrawn"
    if alert.resolved_at is not None:
        who = f" by {person(alert.resolved_by)}" if alert.resolved_by else ""
        return f"Resolved{who} {slack_time(alert.resolved_at)}"
    if alert.acknowledged_by is not None and alert.acknowledged_at is not None:
        who = person(alert.acknowledged_by)
        return f"Acknowledged by {who} {slack_time(alert.acknowledged_at)}"
    if alert.retriggered_at is not None:
        return (
            f"Open again {slack_time(alert.retriggered_at)}: acknowledged but not resolved in "
            f"time (level {max(alert.level_reached, 1)} of {levels})"
        )
    if alert.level_reached > 1:
        return f"Escalated to level {alert.level_reached} of {levels}"
    return f"Open, not acknowledged (level {max(alert.level_reached, 1)} of {levels})"


def actions_block(alert: AlertSnapshot) -> dict[str, Any]:
    """Build the buttons an open alert offers: Acknowledge (until acked), Escalate, Resolve."""
    buttons: list[dict[str, Any]] = []
    if not alert.acknowledged:
        buttons.append(_button("Acknowledge", ACK_ACTION, value=alert.alert_id, style="primary"))
    if can_escalate(alert):
        buttons.append(_button("Escalate", ESCALATE_ACTION, value=alert.alert_id))
    resolve = _button("Resolve", RESOLVE_ACTION, value=alert.alert_id, style="danger")
    resolve["confirm"] = {
        "title": {"type": "plain_text", "text": "Resolve this alert?"},
        "text": {"type": "plain_text", "text": "Escalation stops and every message is updated."},
        "confirm": {"type": "plain_text", "text": "Resolve"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    buttons.append(resolve)
    return {"type": "actions", "block_id": f"alert:{alert.alert_id}", "elements": buttons}


def retriggered(alert: AlertSnapshot) -> bool:
    """Whether the current level's last notification was an ack timing out (a re-trigger)."""
    last = alert.last_notified_at.get(alert.level_reached)
    return alert.retriggered_at is not None and alert.retriggered_at == last


def thread_reply_text(transition: Transition, alert: AlertSnapshot) -> str:
    """Return the thread reply posted under the alert message when it changes."""
    levels = len(alert.policy.levels)
    level = alert.level_reached
    if transition is Transition.ACKNOWLEDGED and alert.acknowledged_by is not None:
        return f":eyes: Acknowledged by {person(alert.acknowledged_by)}."
    if transition is Transition.ESCALATED:
        who = describe_targets(alert.policy.levels[level - 1].notify) if level else "nobody"
        return f":arrow_double_up: Escalated to level {level} of {levels}: {who}."
    if transition is Transition.SEVERITY_RAISED:
        severity = alert.severity.value.upper()
        return (
            f":arrow_double_up: Severity raised to {severity}; its escalation policy restarts now."
        )
    if transition is Transition.REMINDED and retriggered(alert):
        return (
            f"<!here> :rotating_light: Acknowledged but not resolved in time: open again "
            f"(level {level} of {levels})."
        )
    if transition is Transition.REMINDED:
        return f"<!here> :bell: Still not acknowledged (level {level} of {levels})."
    if transition is Transition.RESOLVED:
        who = f" by {person(alert.resolved_by)}" if alert.resolved_by else ""
        return f":white_check_mark: Resolved{who}. Escalation stopped."
    if transition is Transition.CANCELLED:
        return ":no_entry_sign: Cancelled: consent withdrawn. Nothing more will be sent."
    return f"Alert {transition.value}."


def describe_targets(targets: tuple[Target, ...]) -> str:
    """Say whom a level notifies, e.g. 'on-call channel, patient auto-response, agent by sms/push'."""
    parts = []
    for target in targets:
        if target.kind is TargetKind.ONCALL_SLACK:
            parts.append("on-call channel")
        elif target.kind is TargetKind.PATIENT:
            parts.append("patient auto-response")
        else:
            parts.append(f"{target.role} by {'/'.join(target.via)}")
    return ", ".join(parts)


def mention(slack_user_id: str) -> str:
    """Render a Slack user mention; Slack shows the person's current display name."""
    return f"<@{slack_user_id}>"


def person(actor: Actor) -> str:
    """Name who acted: a mention when they have a Slack user id, else their id as plain text."""
    if actor.slack_user_id:
        return mention(actor.slack_user_id)
    return escape_mrkdwn(actor.agent_id)


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's control characters, so text can never become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cancelled_message(alert: AlertSnapshot, dashboard_url: str) -> dict[str, Any]:
    # Consent withdrawn: keep only what identifies the alert, drop metric values and times.
    status = status_text(alert)
    fields = [("Patient", f"`{alert.patient_id}`"), ("Alert", f"`{alert.alert_id}`")]
    text = f":no_entry_sign: {alert.severity.value.upper()} alert cancelled: consent withdrawn"
    return {
        "text": text,
        "blocks": [
            header_block(text),
            fields_block([*fields, ("Status", status)]),
            dashboard_block(dashboard_url),
        ],
        "attachments": [{"color": CANCELLED_COLOUR, "fallback": text, "blocks": []}],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _button(text: str, action_id: str, *, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }
    if style is not None:
        button["style"] = style
    return button
