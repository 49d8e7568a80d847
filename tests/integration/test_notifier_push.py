"""Push end to end: the real FCM adapter against the FCM fake (service-account JSON whose token_uri
is the fake, the OAuth2 JWT-bearer grant, messages:send), with the embedded broker, SQLite and the
Slack and Twilio fakes. A dead registration token is disabled and the patient is reached by SMS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bearer
from tests.fakes.fcm import FCM_SCOPE, FakeFcm
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import FakeTwilio
from tests.integration.notifier_harness import consented, notifier_settings, patient_deliveries
from tests.services.notifier.harness import (
    Service,
    api,
    eventually,
    eventually_async,
    publish_alerts,
    put_contact,
    running,
    twilio_messages_to,
)
from tests.services.notifier.support import PATIENT_PHONE, alert_event

pytestmark = pytest.mark.integration


@pytest.fixture
def fcm() -> Iterator[FakeFcm]:
    """Fake Google token endpoint + FCM HTTP v1 on loopback."""
    fake = FakeFcm().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def service(
    broker: str,
    idp: FakeIdP,
    tmp_path: Path,
    fake_slack: FakeSlack,
    twilio: FakeTwilio,
    fcm: FakeFcm,
) -> AsyncIterator[Service]:
    """The notifier with Slack, Twilio and FCM configured (FCM_CREDENTIALS_FILE, FCM_API_BASE_URL)."""
    config = notifier_settings(
        broker,
        idp,
        tmp_path,
        fake_slack,
        twilio,
        fcm_credentials_file=str(fcm.write_service_account(tmp_path / "service-account.json")),
        fcm_api_base_url=fcm.base_url,
    )
    async with running(config, fake_slack, twilio) as running_service:
        yield running_service


async def push_patient(service: Service, idp: FakeIdP, patient: str, tokens: list[str]) -> None:
    """A tenant-a patient who wants push first, then SMS."""
    await consented(service, patient)
    await put_contact(
        service,
        idp,
        patient,
        phone=PATIENT_PHONE,
        push_tokens=tokens,
        preferred_channels=["push", "sms"],
        language="en",
    )


def pushes_to(fcm: FakeFcm, token: str) -> list[dict[str, Any]]:
    """Messages FCM accepted for a registration token."""
    return [m for m in list(fcm.sends) if m["token"] == token]


def refusals(fcm: FakeFcm, reason: str) -> list[dict[str, Any]]:
    """Sends FCM refused for that reason (unregistered, bearer, ...)."""
    return [r for r in list(fcm.rejected) if r["reason"] == reason]


async def patient_sends(service: Service, idp: FakeIdP, alert_id: str, count: int) -> Any:
    """The patient's deliveries of an alert once `count` of them are settled (sent or failed)."""
    rows = await patient_deliveries(service, idp, alert_id)
    settled = [d for d in rows if d["status"] in ("sent", "failed")]
    return rows if len(settled) == count else None


async def test_a_push_patient_gets_the_red_alert_response_on_their_phone(
    service: Service, idp: FakeIdP, fcm: FakeFcm, twilio: FakeTwilio
) -> None:
    await push_patient(service, idp, "pt-push", ["fcm-token-live"])
    await publish_alerts(service.broker, alert_event(patient="pt-push", alert_id="a-push"))
    (push,) = await eventually(lambda: pushes_to(fcm, "fcm-token-live"))
    (sent,) = await eventually_async(lambda: patient_sends(service, idp, "a-push", 1))
    (grant,) = fcm.token_requests  # one access token, signed by the service account's key
    assert grant["iss"] == fcm.client_email and grant["aud"] == fcm.token_uri
    assert FCM_SCOPE in grant["scope"].split()
    assert push["notification"]["title"] == "A message from your care team"
    assert "care team has been notified" in push["notification"]["body"]
    assert "140" not in json.dumps(push)  # no reading on a lock screen
    assert push["android"]["priority"] == "high"
    assert push["apns"]["headers"]["apns-priority"] == "10"
    assert (sent["channel"], sent["status"]) == ("push", "sent")
    assert twilio_messages_to(twilio, PATIENT_PHONE) == []  # reached: no SMS on top


async def test_an_unregistered_token_is_disabled_and_the_patient_gets_an_sms(
    service: Service, idp: FakeIdP, fcm: FakeFcm, twilio: FakeTwilio
) -> None:
    fcm.unregistered.add("fcm-token-gone")  # the app was uninstalled
    await push_patient(service, idp, "pt-gone", ["fcm-token-gone"])
    await publish_alerts(service.broker, alert_event(patient="pt-gone", alert_id="a-gone-1"))
    (sms,) = await eventually(lambda: twilio_messages_to(twilio, PATIENT_PHONE))
    first = await eventually_async(lambda: patient_sends(service, idp, "a-gone-1", 2))
    contact = await api(service, "GET", "/v1/patients/pt-gone/contact", bearer(idp, "contact:read"))
    # the next alert does not try the dead token again: straight to SMS
    await publish_alerts(service.broker, alert_event("e-2", patient="pt-gone", alert_id="a-gone-2"))
    await eventually(lambda: len(twilio_messages_to(twilio, PATIENT_PHONE)) == 2)
    second = await eventually_async(lambda: patient_sends(service, idp, "a-gone-2", 1))
    assert "care team has been notified" in sms["body"]
    assert [(d["channel"], d["status"]) for d in first] == [("push", "failed"), ("sms", "sent")]
    assert "UNREGISTERED" in first[0]["last_error"]
    assert contact.json()["disabled"] == [{"channel": "push", "address": "fcm-token-gone"}]
    assert [(d["channel"], d["status"]) for d in second] == [("sms", "sent")]
    assert len(refusals(fcm, "unregistered")) == 1
    assert pushes_to(fcm, "fcm-token-gone") == []


async def test_one_dead_device_among_two_leaves_the_other_to_reach_the_patient(
    service: Service, idp: FakeIdP, fcm: FakeFcm, twilio: FakeTwilio
) -> None:
    fcm.unregistered.add("fcm-old-phone")
    await push_patient(service, idp, "pt-two", ["fcm-old-phone", "fcm-new-phone"])
    await publish_alerts(service.broker, alert_event(patient="pt-two", alert_id="a-two"))
    await eventually(lambda: pushes_to(fcm, "fcm-new-phone"))
    sends = await eventually_async(lambda: patient_sends(service, idp, "a-two", 2))
    contact = await api(service, "GET", "/v1/patients/pt-two/contact", bearer(idp, "contact:read"))
    assert sorted((d["channel"], d["status"]) for d in sends) == [
        ("push", "failed"),
        ("push", "sent"),
    ]
    assert contact.json()["disabled"] == [{"channel": "push", "address": "fcm-old-phone"}]
    assert twilio_messages_to(twilio, PATIENT_PHONE) == []  # the new phone got it
