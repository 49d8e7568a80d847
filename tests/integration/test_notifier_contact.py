"""Patient contact data over real HTTP (validated, tenant-scoped), Twilio status callbacks
(signed; an undelivered SMS falls over), and erasure of everything the notifier holds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.events import ErasureEvent
from shared.topics import ERASURE
from tests.conftest import bearer
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import FakeTwilio
from tests.integration.notifier_harness import consented, notifier_settings, patient_deliveries
from tests.services.notifier.harness import (
    api,
    db_settings,
    eventually,
    eventually_async,
    publish,
    publish_alerts,
    put_contact,
    read_topic,
    running,
    twilio_messages_to,
)
from tests.services.notifier.support import PATIENT_PHONE, alert_event

pytestmark = pytest.mark.integration
PREFS = {
    "phone": PATIENT_PHONE,
    "whatsapp": "+5511977776666",
    "push_tokens": ["fcm-token-1"],
    "preferred_channels": ["sms", "whatsapp"],
    "language": "en",
    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "America/Sao_Paulo"},
}


async def test_contact_preferences_are_validated_and_tenant_scoped(
    broker: str,
    idp: FakeIdP,
    database: dict[str, Any],
    tmp_path: Path,
    fake_slack: FakeSlack,
    twilio: FakeTwilio,
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio, db=db_settings(database))
    write, read = bearer(idp, "contact:write"), bearer(idp, "contact:read")
    async with running(config, fake_slack, twilio) as service:
        await consented(service, "pt-c")
        path = "/v1/patients/pt-c/contact"
        missing = await api(service, "GET", path, read)
        put = await api(service, "PUT", path, write, json=PREFS)
        got = await api(service, "GET", path, read)
        bad = await api(service, "PUT", path, write, json=PREFS | {"phone": None})
        bad_zone = await api(
            service,
            "PUT",
            path,
            write,
            json=PREFS
            | {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}},
        )
        other_tenant = await api(
            service, "GET", path, bearer(idp, "contact:read", tenant="tenant-b")
        )
        no_token = await api(service, "GET", path, {})
        wrong_scope = await api(service, "PUT", path, read, json=PREFS)
        not_json = await api(
            service,
            "PUT",
            path,
            write | {"Content-Type": "application/x-www-form-urlencoded"},
            content=b"phone=1",
        )
    assert missing.status_code == 404
    assert put.status_code == 200, put.text
    assert got.status_code == 200 and {k: got.json()[k] for k in PREFS} == PREFS
    assert got.json()["disabled"] == [] and got.json()["updated_by"] == "user-1"
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "preferred_channels"
    assert "phone" in bad.json()["error"]["details"][0]["message"]
    assert bad_zone.status_code == 422 and "quiet_hours.timezone" in bad_zone.text
    assert (other_tenant.status_code, no_token.status_code) == (404, 401)
    assert (wrong_scope.status_code, not_json.status_code) == (403, 415)


async def test_an_undelivered_sms_falls_over_to_the_next_channel(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio)
    async with running(config, fake_slack, twilio) as service:
        await consented(service, "pt-cb")
        await put_contact(service, idp, "pt-cb", **(PREFS | {"quiet_hours": None}))
        await publish_alerts(broker, alert_event(patient="pt-cb", alert_id="a-cb"))
        (sms,) = await eventually(lambda: twilio_messages_to(twilio, PATIENT_PHONE))
        url = f"{service.url}/v1/twilio/status"
        params, headers = twilio.status_callback(url, sms["sid"], "undelivered", error_code=30003)
        bad = await api(
            service,
            "POST",
            "/v1/twilio/status",
            headers | {"X-Twilio-Signature": "AAAA"},
            data=params,
        )
        good = await twilio.send_status_callback(url, sms["sid"], "undelivered", error_code=30003)
        (whatsapp,) = await eventually(lambda: twilio_messages_to(twilio, PREFS["whatsapp"]))

        async def patient_rows() -> Any:
            rows = await patient_deliveries(service, idp, "a-cb")
            return rows if len(rows) == 2 and rows[1]["status"] == "sent" else None

        rows = await eventually_async(patient_rows)
    assert bad.status_code == 401 and good.status_code == 200
    assert whatsapp["to"] == f"whatsapp:{PREFS['whatsapp']}"
    assert [(r["channel"], r["status"], r["provider_status"]) for r in rows] == [
        ("sms", "failed", "undelivered"),
        ("whatsapp", "sent", None),
    ]


async def test_a_late_twilio_status_never_moves_a_message_back(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio)
    async with running(config, fake_slack, twilio) as service:
        await consented(service, "pt-st")
        await put_contact(service, idp, "pt-st", **(PREFS | {"quiet_hours": None}))
        await publish_alerts(broker, alert_event(patient="pt-st", alert_id="a-st"))
        (sms,) = await eventually(lambda: twilio_messages_to(twilio, PATIENT_PHONE))
        url = f"{service.url}/v1/twilio/status"
        seen = []
        for status in ("queued", "delivered", "sent", "queued", "undelivered"):
            answer = await twilio.send_status_callback(url, sms["sid"], status)
            assert answer.status_code == 200
            (row,) = await patient_deliveries(service, idp, "a-st")
            seen.append((row["status"], row["provider_status"]))
    assert seen == [
        ("sent", "queued"),
        ("sent", "delivered"),
        ("sent", "delivered"),  # a late `sent` does not undo `delivered`
        ("sent", "delivered"),
        ("sent", "delivered"),  # nor a contradicting `undelivered`: no fallback either
    ]
    assert twilio_messages_to(twilio, PREFS["whatsapp"]) == []


async def test_erasure_deletes_contact_data_and_alerts(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    config = notifier_settings(broker, idp, tmp_path, fake_slack, twilio)
    async with running(config, fake_slack, twilio) as service:
        await consented(service, "pt-er")
        await put_contact(service, idp, "pt-er", **PREFS)
        await publish_alerts(broker, alert_event(patient="pt-er", alert_id="a-er"))
        await eventually(lambda: fake_slack.calls_mentioning("pt-er"))
        exported = await api(
            service, "GET", "/v1/patients/pt-er/export", bearer(idp, "patient:export")
        )
        request = ErasureEvent(
            event_id="er-1",
            request_id="req-1",
            patient_id="pt-er",
            tenant_id="tenant-a",
            kind="requested",
            occurred_at=datetime.now(UTC),
        )
        await publish(broker, ERASURE, request)
        raw = await read_topic(broker, ERASURE.name, 2)
        contact = await api(
            service, "GET", "/v1/patients/pt-er/contact", bearer(idp, "contact:read")
        )
        alert = await api(service, "GET", "/v1/alerts/a-er", bearer(idp, "alerts:read"))
    data = exported.json()["data"]
    assert data["contact"]["phone"] == PATIENT_PHONE
    assert [a["alert_id"] for a in data["alerts"]] == ["a-er"]
    completed = ErasureEvent.model_validate_json(raw[1])
    assert (completed.kind, completed.service) == ("completed", "notifier")
    assert "1 alert row(s)" in completed.detail
    assert (contact.status_code, alert.status_code) == (404, 404)
