"""What reaches the on-call channel, and what never does."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.notifier.domain import should_page, slack_message
from shared.events import AlertEvent, AlertKind, Severity, TriggerReading
from tests.services.notifier.rules import HEART_RATE_HIGH

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def event(kind: AlertKind, severity: Severity) -> AlertEvent:
    return AlertEvent(
        event_id="e-1",
        alert_id="a-1",
        patient_id="pt-77",
        kind=kind,
        severity=severity,
        previous_severity=Severity.GREEN,
        rule=HEART_RATE_HIGH,
        readings=(
            TriggerReading(
                reading_id="r", metric="heart_rate", value=131, unit="/min", measured_at=AT
            ),
        ),
        occurred_at=AT,
    )


@pytest.mark.parametrize(
    ("kind", "severity", "page"),
    [
        (AlertKind.OPENED, Severity.RED, True),
        (AlertKind.OPENED, Severity.YELLOW, True),
        (AlertKind.ESCALATED, Severity.RED, True),
        (AlertKind.RESOLVED, Severity.GREEN, False),
        (AlertKind.ACKNOWLEDGED, Severity.RED, False),
    ],
)
def test_who_gets_paged(kind: AlertKind, severity: Severity, page: bool) -> None:
    assert should_page(event(kind, severity)) is page


def test_slack_message_has_severity_metric_value_threshold_time_patient_and_link() -> None:
    body = slack_message(
        event(AlertKind.OPENED, Severity.RED), channel="#c", dashboard_url="http://dash/"
    )
    assert body["channel"] == "#c"
    assert body["text"].startswith(":red_circle: RED")
    dumped = json.dumps(body)
    for fragment in ("Heart rate", "131 /min", "> 120 /min", "pt-77", "http://dash/", "2026-11-23"):
        assert fragment in dumped
    assert body["attachments"][0]["color"] == "#D32F2F"
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context"]


def test_events_without_readings_or_with_several_metrics_still_render() -> None:
    no_data = event(AlertKind.OPENED, Severity.YELLOW).model_copy(update={"readings": ()})
    assert "no reading" in slack_message(no_data, channel="#c", dashboard_url="http://d/")["text"]
    composite = event(AlertKind.OPENED, Severity.RED).model_copy(
        update={
            "readings": (
                TriggerReading(
                    reading_id="a", metric="heart_rate", value=131, unit="/min", measured_at=AT
                ),
                TriggerReading(reading_id="b", metric="spo2", value=90, unit="%", measured_at=AT),
            )
        }
    )
    text = slack_message(composite, channel="#c", dashboard_url="http://d/")["text"]
    assert "Heart rate 131 /min" in text and "Oxygen saturation (SpO2) 90 %" in text
