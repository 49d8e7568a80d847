"""Twilio (SMS, WhatsApp) and FCM senders over loopback HTTP against fakes of the real wire format.

Slack's sender and request verification are in test_slack_adapter.py.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.notifier.adapters.fcm import FcmPushSender, load_service_account
from services.notifier.adapters.twilio import TwilioMessageSender, verify_twilio_signature
from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from services.notifier.ports import Channel, Delivery
from tests.fakes.fcm import FCM_SCOPE, FakeFcm
from tests.fakes.server import ThreadedServer
from tests.fakes.twilio import FakeTwilio

NURSE = "+4915112345678"
SENDER = "+4930901820"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def fcm() -> Iterator[FakeFcm]:
    fake = FakeFcm().start()
    yield fake
    fake.stop()


def sms(http: httpx.AsyncClient, twilio: FakeTwilio, **overrides: Any) -> TwilioMessageSender:
    args: dict[str, Any] = {
        "client": http,
        "channel": Channel.SMS,
        "account_sid": twilio.account_sid,
        "auth_token": twilio.auth_token,
        "from_number": SENDER,
        "base_url": twilio.base_url,
        "status_callback": "https://notifier.example/v1/twilio/status",
    }
    return TwilioMessageSender(**(args | overrides))


def text_to(recipient: str, channel: Channel = Channel.SMS) -> Delivery:
    return Delivery(idempotency_key="k-1", channel=channel, recipient=recipient, text="RED a-1")


async def test_sms_creates_a_message_and_answers_its_sid(
    http: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    receipt = await sms(http, twilio).send(text_to(NURSE))
    (message,) = twilio.messages
    assert receipt.provider_ref == message["sid"] and receipt.provider_ref.startswith("SM")
    assert (message["to"], message["from"], message["body"]) == (NURSE, SENDER, "RED a-1")
    assert message["status_callback"] == "https://notifier.example/v1/twilio/status"


async def test_whatsapp_prefixes_both_numbers(http: httpx.AsyncClient, twilio: FakeTwilio) -> None:
    sender = sms(http, twilio, channel=Channel.WHATSAPP, status_callback=None)
    await sender.send(text_to(NURSE, Channel.WHATSAPP))
    (message,) = twilio.messages
    assert (message["to"], message["from"]) == (f"whatsapp:{NURSE}", f"whatsapp:{SENDER}")
    assert message["status_callback"] is None


@pytest.mark.parametrize(
    ("script", "recipient", "code", "disable"),
    [
        ({"opted_out": {NURSE}}, NURSE, "21610", True),
        ({}, "0151 1234", "21211", True),
        ({"not_mobile": {NURSE}}, NURSE, "21614", True),
        ({"auth_token": "rotated-token"}, NURSE, "20003", False),
    ],
    ids=["opted-out", "not-e164", "not-mobile", "wrong-auth"],
)
async def test_twilio_refusals_are_permanent(
    http: httpx.AsyncClient, script: dict[str, Any], recipient: str, code: str, disable: bool
) -> None:
    fake = FakeTwilio(**{k: v for k, v in script.items() if k in ("opted_out", "not_mobile")})
    fake.start()
    try:
        creds = {k: v for k, v in script.items() if k == "auth_token"}
        with pytest.raises(PermanentDeliveryError) as caught:
            await sms(http, fake, **creds).send(text_to(recipient))
    finally:
        fake.stop()
    assert (caught.value.code, caught.value.disable_recipient) == (code, disable)
    assert fake.messages == [] and [r["code"] for r in fake.rejected] == [int(code)]


async def test_twilio_429_is_transient_with_retry_after(
    http: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    twilio.rate_limit_next, twilio.retry_after_s = 1, 7
    with pytest.raises(TransientDeliveryError) as caught:
        await sms(http, twilio).send(text_to(NURSE))
    assert caught.value.retry_after_s == 7.0 and twilio.messages == []
    await sms(http, twilio).send(text_to(NURSE))  # the next call goes through
    assert len(twilio.messages) == 1


async def test_twilio_429_without_retry_after_still_says_to_wait(
    http: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    twilio.rate_limit_next, twilio.retry_after_s = 1, None
    with pytest.raises(TransientDeliveryError) as caught:
        await sms(http, twilio).send(text_to(NURSE))
    assert caught.value.retry_after_s == 1.0  # known as a rate limit: it uses up no attempt


async def test_twilio_5xx_and_no_answer_are_transient(
    http: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    twilio.server_error_next = 1
    with pytest.raises(TransientDeliveryError) as caught:
        await sms(http, twilio).send(text_to(NURSE))
    assert caught.value.retry_after_s is None
    with pytest.raises(TransientDeliveryError):
        await sms(http, twilio, base_url="http://127.0.0.1:9").send(text_to(NURSE))


async def test_twilio_sender_refuses_other_channels(
    http: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    with pytest.raises(ValueError, match="push"):
        sms(http, twilio, channel=Channel.PUSH)


def test_twilio_signature_matches_the_documented_example() -> None:
    # https://www.twilio.com/docs/usage/security#validating-requests (auth token 12345)
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert verify_twilio_signature(auth_token="12345", url=url, params=params, signature=good)
    assert not verify_twilio_signature(
        auth_token="12345", url=url, params=params | {"Digits": "1235"}, signature=good
    )


class Receiver:
    """A StatusCallback endpoint on loopback that records what Twilio POSTed."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], dict[str, str]]] = []
        self._cond = threading.Condition()
        app = Starlette(routes=[Route("/v1/twilio/status", self._status, methods=["POST"])])
        self.server = ThreadedServer(app, name="receiver")
        self.url = f"http://127.0.0.1:{self.server.port}/v1/twilio/status"

    async def _status(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        with self._cond:
            self.seen.append((form, dict(request.headers)))
        return Response(status_code=204)


async def test_status_callback_is_signed_for_its_url_and_params(
    http: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    receiver = Receiver()
    receiver.server.start()
    try:
        receipt = await sms(http, twilio, status_callback=receiver.url).send(text_to(NURSE))
        answer = await twilio.send_status_callback(
            receiver.url, receipt.provider_ref, "failed", 30003
        )
    finally:
        receiver.server.stop()
    assert answer.status_code == 204
    ((form, headers),) = receiver.seen
    assert (form["MessageSid"], form["MessageStatus"], form["ErrorCode"]) == (
        receipt.provider_ref,
        "failed",
        "30003",
    )
    signature = headers["x-twilio-signature"]
    token = twilio.auth_token
    assert verify_twilio_signature(
        auth_token=token, url=receiver.url, params=form, signature=signature
    )
    tampered = form | {"MessageStatus": "delivered"}
    assert not verify_twilio_signature(
        auth_token=token, url=receiver.url, params=tampered, signature=signature
    )
    assert not verify_twilio_signature(
        auth_token=token, url=receiver.url + "?x=1", params=form, signature=signature
    )
    assert not verify_twilio_signature(
        auth_token=token, url=receiver.url, params=form, signature=""
    )


def push_sender(http: httpx.AsyncClient, fcm: FakeFcm, tmp_path: Path) -> FcmPushSender:
    account = load_service_account(fcm.write_service_account(tmp_path / "sa.json"))
    return FcmPushSender(client=http, account=account, api_base_url=fcm.base_url)


def push_to(token: str) -> Delivery:
    return Delivery(
        idempotency_key="k-1",
        channel=Channel.PUSH,
        recipient=token,
        title="RED alert",
        text="Open the app",
        data={"alert_id": "a-1"},
    )


async def test_push_sends_with_a_service_account_token(
    http: httpx.AsyncClient, fcm: FakeFcm, tmp_path: Path
) -> None:
    receipt = await push_sender(http, fcm, tmp_path).send(push_to("device-1"))
    assert receipt.provider_ref.startswith(f"projects/{fcm.project_id}/messages/")
    (message,) = fcm.sends
    assert message["token"] == "device-1" and message["data"] == {"alert_id": "a-1"}
    assert message["notification"] == {"title": "RED alert", "body": "Open the app"}
    assert message["android"]["priority"] == "high"
    (claims,) = fcm.token_requests
    assert (claims["iss"], claims["aud"], claims["scope"]) == (
        fcm.client_email,
        fcm.token_uri,
        FCM_SCOPE,
    )


async def test_access_token_is_reused_until_a_minute_before_expiry(
    http: httpx.AsyncClient, fcm: FakeFcm, tmp_path: Path
) -> None:
    sender = push_sender(http, fcm, tmp_path)
    await sender.send(push_to("device-1"))
    await sender.send(push_to("device-2"))
    assert len(fcm.token_requests) == 1 and len(fcm.sends) == 2
    fcm.token_ttl_s = 59  # tokens now arrive already inside the refresh margin
    fresh = push_sender(http, fcm, tmp_path)
    await fresh.send(push_to("device-1"))
    await fresh.send(push_to("device-2"))
    assert len(fcm.token_requests) == 3


@pytest.mark.parametrize("expires_in", ["soon", [], {"s": 1}, -5, "nan"])
async def test_a_token_answer_with_a_bad_expires_in_is_transient(
    http: httpx.AsyncClient, fcm: FakeFcm, tmp_path: Path, expires_in: Any
) -> None:
    fcm.token_ttl_s = expires_in
    with pytest.raises(TransientDeliveryError, match="expires_in"):
        await push_sender(http, fcm, tmp_path).send(push_to("device-1"))
    assert fcm.sends == []


async def test_401_refreshes_the_token_once_and_delivers(
    http: httpx.AsyncClient, fcm: FakeFcm, tmp_path: Path
) -> None:
    sender = push_sender(http, fcm, tmp_path)
    await sender.send(push_to("device-1"))
    fcm.revoke_access_tokens()
    await sender.send(push_to("device-2"))
    assert len(fcm.token_requests) == 2 and len(fcm.sends) == 2
    assert [r["status"] for r in fcm.rejected] == [401]


@pytest.mark.parametrize(
    ("script", "code", "disable"),
    [
        ({"unregistered": {"device-1"}}, "UNREGISTERED", True),
        ({"invalid_tokens": {"device-1"}}, "INVALID_ARGUMENT", False),
    ],
)
async def test_fcm_refusals_are_permanent(
    http: httpx.AsyncClient, tmp_path: Path, script: dict[str, Any], code: str, disable: bool
) -> None:
    fcm = FakeFcm(**script).start()
    try:
        with pytest.raises(PermanentDeliveryError) as caught:
            await push_sender(http, fcm, tmp_path).send(push_to("device-1"))
    finally:
        fcm.stop()
    assert (caught.value.code, caught.value.disable_recipient) == (code, disable)
    assert fcm.sends == []


@pytest.mark.parametrize(
    ("knob", "retry_after", "expected"),
    [
        ("quota_exceeded_next", 120, 120.0),
        ("quota_exceeded_next", 5, 60.0),  # FCM: at least a minute after a quota error
        ("quota_exceeded_next", None, 60.0),
        ("unavailable_next", None, None),
        ("unavailable_next", 7, 7.0),
    ],
)
async def test_fcm_quota_and_outage_are_transient(
    http: httpx.AsyncClient,
    fcm: FakeFcm,
    tmp_path: Path,
    knob: str,
    retry_after: int | None,
    expected: float | None,
) -> None:
    setattr(fcm, knob, 1)
    fcm.retry_after_s = retry_after
    sender = push_sender(http, fcm, tmp_path)
    with pytest.raises(TransientDeliveryError) as caught:
        await sender.send(push_to("device-1"))
    assert caught.value.retry_after_s == expected and fcm.sends == []
    await sender.send(push_to("device-1"))
    assert len(fcm.sends) == 1


async def test_assertion_signed_by_another_key_is_refused(
    http: httpx.AsyncClient, fcm: FakeFcm, tmp_path: Path
) -> None:
    stranger = FakeFcm(port=fcm.port)  # same token_uri, different private key
    account = load_service_account(stranger.write_service_account(tmp_path / "other.json"))
    sender = FcmPushSender(client=http, account=account, api_base_url=fcm.base_url)
    with pytest.raises(PermanentDeliveryError) as caught:
        await sender.send(push_to("device-1"))
    assert caught.value.code == "invalid_grant" and fcm.token_requests == fcm.sends == []


def test_only_service_account_files_load(tmp_path: Path) -> None:
    path = tmp_path / "user.json"
    path.write_text('{"type": "authorized_user", "client_id": "x"}')
    with pytest.raises(ValueError, match="service-account"):
        load_service_account(path)
