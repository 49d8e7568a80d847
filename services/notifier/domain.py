"""Pure notifier decisions: what to tell whom, and how the message looks."""

from __future__ import annotations

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


def summary_text(event: AlertEvent) -> str:
    """One-line text (Slack fallback and console): severity, metric, value, threshold, patient."""
    reading = event.readings[-1]
    spec = CATALOG[reading.metric]
    return (
        f"{event.severity.value.upper()} alert {event.kind.value}: {spec.display} "
        f"{reading.value:g} {reading.unit} ({event.rule.threshold}) "
        f"at {reading.measured_at:%Y-%m-%d %H:%M:%S}Z, patient {event.patient_id}"
    )


def slack_message(event: AlertEvent, *, channel: str, dashboard_url: str) -> dict[str, Any]:
    """Build the chat.postMessage body (Block Kit). Pseudonymous id only, no contact data."""
    colour, emoji = SEVERITY_STYLE[event.severity]
    reading = event.readings[-1]
    spec = CATALOG[reading.metric]
    fields = [
        ("Patient", f"`{event.patient_id}`"),
        ("Metric", spec.display),
        ("Value", f"{reading.value:g} {reading.unit}"),
        ("Rule", f"{event.rule.threshold} ({event.rule.rule_id} v{event.rule.version})"),
        (
            "Measured",
            f"<!date^{int(reading.measured_at.timestamp())}^{{date_short_pretty}} "
            f"{{time_secs}}|{reading.measured_at:%Y-%m-%d %H:%M:%S} UTC>",
        ),
        ("Alert", f"`{event.alert_id}`"),
    ]
    return {
        "channel": channel,
        "text": f"{emoji} {summary_text(event)}",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": f"{emoji} {event.severity.value.upper()}: {spec.display}",
                    "emoji": True,
                },
            },
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{dashboard_url}|Open the dashboard>"}],
            },
        ],
        "attachments": [{"color": colour, "fallback": summary_text(event), "blocks": []}],
        "unfurl_links": False,
        "unfurl_media": False,
    }
