"""Slack rendering of one alert event (chat.postMessage body) and who gets paged at all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.events import AlertEvent, AlertKind, Severity
from shared.vitals import CATALOG

SEVERITY_STYLE: dict[Severity, tuple[str, str]] = {
    Severity.RED: ("#D32F2F", ":red_circle:"),
    Severity.YELLOW: ("#F9A825", ":large_yellow_circle:"),
    Severity.GREEN: ("#2E7D32", ":large_green_circle:"),
}


def should_page(event: AlertEvent) -> bool:
    """Return True when the on-call channel must be told about this event."""
    return (
        event.kind in (AlertKind.OPENED, AlertKind.ESCALATED)
        and event.severity is not Severity.GREEN
    )


def _what(event: AlertEvent) -> tuple[str, str, datetime]:
    """Title, value text and time of an event: one metric's last reading, the contributing
    readings of a composite (NEWS2), or the rule alone for events without readings (no data)."""
    readings = event.readings
    if not readings:
        return event.rule.description, "no reading", event.occurred_at
    metrics = {r.metric for r in readings}
    if len(metrics) == 1:
        last = readings[-1]
        return CATALOG[last.metric].display, f"{last.value:g} {last.unit}", last.measured_at
    values = ", ".join(f"{CATALOG[r.metric].display} {r.value:g} {r.unit}" for r in readings)
    return event.rule.description, values, max(r.measured_at for r in readings)


def alert_subject(event: AlertEvent) -> str:
    """Name what the alert is about: the metric, or the rule for composites and gaps; no value."""
    return _what(event)[0]


def slack_time(at: datetime) -> str:
    """Render a time as a Slack date token (reader's time zone) with a UTC fallback."""
    return (
        f"<!date^{int(at.timestamp())}^{{date_short_pretty}} "
        f"{{time_secs}}|{at:%Y-%m-%d %H:%M:%S} UTC>"
    )


def event_fields(event: AlertEvent) -> list[tuple[str, str]]:
    """List the (label, mrkdwn) fields of an event: patient id, metric, value, rule, time, alert."""
    title, value, at = _what(event)
    return [
        ("Patient", f"`{event.patient_id}`"),
        ("Metric", title),
        ("Value", value),
        ("Rule", f"{event.rule.threshold} ({event.rule.rule_id} v{event.rule.version})"),
        ("Measured", slack_time(at)),
        ("Alert", f"`{event.alert_id}`"),
    ]


def fields_block(fields: list[tuple[str, str]]) -> dict[str, Any]:
    """Build a section block of bold-labelled fields."""
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
    }


def dashboard_block(dashboard_url: str) -> dict[str, Any]:
    """Build the context block linking to the dashboard."""
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"<{dashboard_url}|Open the dashboard>"}],
    }


def header_block(text: str) -> dict[str, Any]:
    """Build a plain-text header block (Slack caps headers at 150 characters)."""
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def summary_text(event: AlertEvent) -> str:
    """One-line text (Slack fallback and console): severity, what, value, threshold, patient."""
    title, value, at = _what(event)
    return (
        f"{event.severity.value.upper()} alert {event.kind.value}: {title} "
        f"{value} ({event.rule.threshold}) at {at:%Y-%m-%d %H:%M:%S}Z, patient {event.patient_id}"
    )


def slack_message(event: AlertEvent, *, channel: str, dashboard_url: str) -> dict[str, Any]:
    """Build the chat.postMessage body (Block Kit). Pseudonymous id only, no contact data."""
    colour, emoji = SEVERITY_STYLE[event.severity]
    title = alert_subject(event)
    return {
        "channel": channel,
        "text": f"{emoji} {summary_text(event)}",
        "blocks": [
            header_block(f"{emoji} {event.severity.value.upper()}: {title}"),
            fields_block(event_fields(event)),
            dashboard_block(dashboard_url),
        ],
        "attachments": [{"color": colour, "fallback": summary_text(event), "blocks": []}],
        "unfurl_links": False,
        "unfurl_media": False,
    }
