"""Log lines never carry patient ids, vital values, contact data or tokens."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from shared.logging import Redactor, configure_logging


def test_redactor_pseudonymizes_patient_ids_and_drops_sensitive_values() -> None:
    redactor = Redactor(b"k" * 32)
    event = redactor(
        None,
        "info",
        {
            "event": "alert_sent",
            "patient_id": "pt-123",
            "value": 130,
            "phone": "+5511999999999",
            "authorization": "Bearer xoxb-secret",
            "nested": {"name": "Maria Silva", "severity": "red"},
            "severity": "red",
        },
    )
    assert event["patient_id"].startswith("pref_") and "pt-123" not in event["patient_id"]
    assert event["value"] == event["phone"] == event["authorization"] == "[redacted]"
    assert event["nested"] == {"name": "[redacted]", "severity": "red"}
    assert event["severity"] == "red"


def test_the_same_patient_gets_the_same_reference_under_one_key() -> None:
    a, b = Redactor(b"a" * 32), Redactor(b"b" * 32)
    assert a.patient_ref("pt-1") == a.patient_ref("pt-1") != a.patient_ref("pt-2")
    assert a.patient_ref("pt-1") != b.patient_ref("pt-1")


def test_configured_logging_emits_redacted_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="test", redaction_key=b"x" * 32)
    try:
        structlog.get_logger("t").info("reading_seen", patient_id="pt-9", value=180.5, metric="hr")
        logging.getLogger("stdlib").warning("stdlib line %s", "ok")
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    first = lines[0]
    assert first["event"] == "reading_seen" and first["service"] == "test"
    assert first["value"] == "[redacted]" and first["patient_id"].startswith("pref_")
    assert "pt-9" not in json.dumps(lines) and "180.5" not in json.dumps(lines)
    assert lines[1]["event"] == "stdlib line ok" and lines[1]["level"] == "warning"
