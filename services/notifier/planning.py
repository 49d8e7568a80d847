"""Turn escalation steps and alert changes into delivery rows (pure: inputs in, rows out).

Slack: an alert has one main message per channel, posted when a level first includes the on-call
channel and rendered from the alert's state at send time. Every later change updates each main
message in place (chat.update) and replies in its thread. People (agents, the patient) get one row
per address of their first usable channel; the rest of their channel plan rides along for fallback.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifier.domain import (
    AlertSnapshot,
    Audience,
    DeliveryPlan,
    PatientMessageKind,
    Routing,
    Step,
    Transition,
    agent_message,
    idempotency_key,
    patient_alert_kind,
    patient_message,
    plan_targets,
    thread_reply_text,
)
from services.notifier.domain.contact import ContactPreferences
from services.notifier.ports import Channel
from services.notifier.records import DeliveryRow, NewDelivery

RENDER_ALERT = {"render": "alert"}  # rendered from the alert's current state when sent


@dataclass(frozen=True)
class Main:
    """An alert's main Slack message (maybe not sent yet): the row to update and thread under."""

    id: int
    channel: str


@dataclass(frozen=True)
class Planned:
    """What a step queues, and recipients nobody could be sent to (no usable address)."""

    deliveries: list[NewDelivery]
    unreachable: list[DeliveryPlan]


def plan_step(
    alert: AlertSnapshot,
    step: Step,
    *,
    routing: Routing,
    mains: Sequence[Main],
    contact: ContactPreferences | None,
    disabled: Collection[tuple[Channel, str]],
    notifications_allowed: bool,
    dashboard_url: str,
    now: datetime,
) -> Planned:
    """Queue a due step: the main Slack post (unless one exists) and each person's first channel."""
    plans = plan_targets(
        step,
        contact=contact,
        agents=routing.agents,
        notifications_allowed=notifications_allowed,
        now=now,
        disabled=disabled,
    )
    out: list[NewDelivery] = []
    unreachable: list[DeliveryPlan] = []
    posted = {m.channel for m in mains}
    for plan in plans:
        if plan.audience is Audience.ONCALL_SLACK:
            if plan.recipient not in posted:
                out.append(_main_post(alert, step.event, plan.recipient, now))
        elif not plan.candidates:
            unreachable.append(plan)
        else:
            payload = _person_payload(alert, step, plan, dashboard_url)
            out += first_channel_rows(alert, plan, step.event, payload, _kind(plan, routing))
    return Planned(out, unreachable)


def first_channel_rows(
    alert: AlertSnapshot, plan: DeliveryPlan, event: str, payload: dict[str, Any], kind: str
) -> list[NewDelivery]:
    """One row per address of the plan's first channel."""
    candidate = plan.candidates[0]
    return [
        NewDelivery(
            key=idempotency_key(alert.alert_id, event, channel=candidate.channel, recipient=a),
            alert_id=alert.alert_id,
            patient_id=alert.patient_id,
            event=event,
            role="post",
            channel=candidate.channel,
            recipient=a,
            recipient_kind=kind,
            recipient_label=plan.recipient,
            payload=payload,
            plan=plan_to_json(plan),
            not_before=plan.not_before,
        )
        for a in candidate.addresses
    ]


def slack_changes(
    alert: AlertSnapshot, transition: Transition, change: str, mains: Sequence[Main]
) -> list[NewDelivery]:
    """Update every main message to the alert's state and reply in its thread."""
    reply = {"text": thread_reply_text(transition, alert)}
    out: list[NewDelivery] = []
    for main in mains:
        for role, payload in (("update", RENDER_ALERT), ("reply", reply)):
            key = idempotency_key(
                alert.alert_id, f"{change}.{role}", channel=Channel.SLACK, recipient=str(main.id)
            )
            out.append(_slack_row(alert, key, change, main.channel, role, payload, ref_id=main.id))
    return out


def person_followups(
    alert: AlertSnapshot, transition: Transition, sent: Sequence[DeliveryRow]
) -> list[NewDelivery]:
    """Tell everyone already reached by phone that the alert was resolved or cancelled."""
    out: list[NewDelivery] = []
    for row in sent:
        if row.channel is Channel.SLACK or row.role != "post" or row.recipient_kind == "ops":
            continue
        if row.recipient_kind == "patient":
            if transition is not Transition.RESOLVED:
                continue  # consent withdrawn: nothing more goes to the patient
            language = row.plan.get("language")
            message = patient_message(PatientMessageKind.RESOLVED, language)
            payload = {"text": message.body, "title": message.title}
        else:
            payload = agent_closed_message(alert, transition)
        key = idempotency_key(
            alert.alert_id, transition.value, channel=row.channel, recipient=row.recipient
        )
        out.append(
            NewDelivery(
                key=key,
                alert_id=alert.alert_id,
                patient_id=alert.patient_id,
                event=transition.value,
                role="post",
                channel=row.channel,
                recipient=row.recipient,
                recipient_kind=row.recipient_kind,
                recipient_label=row.recipient_label,
                payload=payload,
            )
        )
    return out


def agent_closed_message(alert: AlertSnapshot, transition: Transition) -> dict[str, Any]:
    """The SMS/push to an agent already paged, once the alert is closed: ids only, no values."""
    severity = alert.severity.value.upper()
    if transition is Transition.CANCELLED:
        what = "cancelled (consent withdrawn): do not contact the patient about it"
    else:
        what = "resolved: no action needed"
    body = f"{severity} alert {alert.alert_id} {what}. Patient {alert.patient_id}."
    return {"text": body, "title": f"{severity} alert {transition.value}"}


def ops_delivery(
    *, alert_id: str, patient_id: str, event: str, who: str, reason: str, ops_channel: str
) -> NewDelivery:
    """The on-call channel's notice that the notifier itself failed to deliver something."""
    text = (
        f":rotating_light: Notifier could not deliver `{event}` of alert `{alert_id}` to {who} "
        f"on any channel ({reason[:200]}). It was dead-lettered."
    )
    ops_event = f"ops.{event}.{who}"
    key = idempotency_key(alert_id, ops_event, channel=Channel.SLACK, recipient=ops_channel)
    return NewDelivery(
        key=key,
        alert_id=alert_id,
        patient_id=patient_id,
        event=ops_event[:64],
        role="post",
        channel=Channel.SLACK,
        recipient=ops_channel,
        recipient_kind="ops",
        recipient_label=ops_channel,
        payload={"text": text},
    )


def plan_to_json(plan: DeliveryPlan) -> dict[str, Any]:
    """The plan stored with each row, to fall over to the next channel later."""
    return {
        "audience": plan.audience.value,
        "recipient": plan.recipient,
        "language": plan.language,
        "candidates": [
            {"channel": c.channel.value, "addresses": list(c.addresses)} for c in plan.candidates
        ],
    }


def _main_post(alert: AlertSnapshot, event: str, channel: str, now: datetime) -> NewDelivery:
    key = idempotency_key(alert.alert_id, event, channel=Channel.SLACK, recipient=channel)
    return _slack_row(alert, key, event, channel, "post", RENDER_ALERT, ref_id=None)


def _slack_row(
    alert: AlertSnapshot,
    key: str,
    event: str,
    channel: str,
    role: str,
    payload: dict[str, Any],
    *,
    ref_id: int | None,
) -> NewDelivery:
    return NewDelivery(
        key=key,
        alert_id=alert.alert_id,
        patient_id=alert.patient_id,
        event=event,
        role=role,
        channel=Channel.SLACK,
        recipient=channel,
        recipient_kind="oncall",
        recipient_label=channel,
        payload=payload,
        ref_id=ref_id,
    )


def _kind(plan: DeliveryPlan, routing: Routing) -> str:
    if plan.audience is Audience.PATIENT:
        return "patient"
    agent = next((a for a in routing.agents if a.id == plan.recipient), None)
    return agent.role if agent is not None else "agent"


def _person_payload(
    alert: AlertSnapshot, step: Step, plan: DeliveryPlan, dashboard_url: str
) -> dict[str, Any]:
    if plan.audience is Audience.PATIENT:
        message = patient_message(patient_alert_kind(step.severity), plan.language)
    else:
        message = agent_message(
            alert, level=step.level, dashboard_url=dashboard_url, reminder=step.renotify
        )
    data = {"alert_id": alert.alert_id, "severity": alert.severity.value}
    return {"text": message.body, "title": message.title, "data": data}
