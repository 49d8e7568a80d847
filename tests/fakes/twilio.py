"""A local Twilio Messages API fake: POST /2010-04-01/Accounts/{sid}/Messages.json, as Twilio.

It checks what Twilio checks, in Twilio's error body `{"code", "message", "more_info", "status"}`:
HTTP Basic auth with the account SID and auth token (401, 20003), the SID in the path being the
authenticated account (404, 20404), a form-encoded body with To (21604), From (21603) and Body
(21602), To in E.164 (21211), From and To on the same channel (21910), opted-out numbers (21610),
numbers that cannot receive SMS (21614). `rate_limit_next` answers 429 (20429), `server_error_next`
answers 500 (20500). Accepted messages get 201 and the Message resource (sid "SM...", status
"queued"). `send_status_callback` POSTs the signed status callback Twilio sends to StatusCallback.
Docs: https://www.twilio.com/docs/messaging/api/message-resource,
https://www.twilio.com/docs/usage/security#validating-requests
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ERRORS = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    21211: (400, "Invalid 'To' Phone Number"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21910: (400, "Invalid From and To pair. From and To should be of the same channel"),
}


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by each sorted name+value."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(
        hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    ).decode()


@dataclass
class FakeTwilio:
    """Run with start(); accepted messages land in `messages`, refusals in `rejected`."""

    account_sid: str = "AC" + "c0ffee" * 5 + "42"
    auth_token: str = "twilio-test-auth-token"
    opted_out: set[str] = field(default_factory=set)  # E.164 numbers that replied STOP
    not_mobile: set[str] = field(default_factory=set)  # E.164 numbers that cannot get SMS
    rate_limit_next: int = 0
    retry_after_s: int | None = None  # Retry-After on 429 when set
    server_error_next: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        """Value for the adapter's base_url (Twilio's is https://api.twilio.com)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeTwilio:
        """Serve on a free loopback port in a background thread."""
        path = "/2010-04-01/Accounts/{account_sid}/Messages.json"
        app = Starlette(routes=[Route(path, self._create, methods=["POST"])])
        self._server = ThreadedServer(app, name="Twilio", port=self.port)
        self.port = self._server.port
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()

    def _error(self, code: int, **headers: str) -> JSONResponse:
        status, message = ERRORS[code]
        with self._lock:
            self.rejected.append({"code": code, "status": status})
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return JSONResponse(body, status_code=status, headers=headers)

    def _take(self, knob: str) -> bool:
        with self._lock:
            left = getattr(self, knob)
            setattr(self, knob, max(0, left - 1))
        return bool(left > 0)

    def _authenticated(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Basic {expected}".encode())

    async def _create(self, request: Request) -> JSONResponse:
        if self._take("rate_limit_next"):
            retry = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else {}
            return self._error(20429, **retry)
        if self._take("server_error_next"):
            return self._error(20500)
        if not self._authenticated(request):
            return self._error(20003, **{"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.path_params["account_sid"] != self.account_sid:
            return self._error(20404)
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if code := self._refusal(form):
            return self._error(code)
        return JSONResponse(self._accept(form), status_code=201)

    def _refusal(self, form: dict[str, str]) -> int | None:
        """The Twilio error code for this form, or None when Twilio would accept it."""
        to, sender = form.get("To", ""), form.get("From", "")
        if not to:
            return 21604
        if not sender:
            return 21603
        if not form.get("Body") and not form.get("MediaUrl"):
            return 21602
        number = to.removeprefix("whatsapp:")
        if not E164.match(number):
            return 21211
        if to.startswith("whatsapp:") != sender.startswith("whatsapp:"):
            return 21910
        if number in self.opted_out:
            return 21610
        if number in self.not_mobile and not to.startswith("whatsapp:"):
            return 21614
        return None

    def _accept(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = formatdate(usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form["From"],
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }
        with self._lock:
            self.messages.append({**resource, "status_callback": form.get("StatusCallback")})
        return resource

    def status_callback(
        self, url: str, message_sid: str, status: str, error_code: int | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The form params and headers Twilio POSTs to a StatusCallback URL, signed."""
        with self._lock:
            sent = next((m for m in self.messages if m["sid"] == message_sid), {})
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "MessageSid": message_sid,
            "MessageStatus": status,
            "SmsSid": message_sid,
            "SmsStatus": status,
        }
        if sent:
            params |= {"From": sent["from"], "To": sent["to"]}
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        headers = {
            "X-Twilio-Signature": twilio_signature(self.auth_token, url, params),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        return params, headers

    async def send_status_callback(
        self, url: str, message_sid: str, status: str, error_code: int | None = None
    ) -> httpx.Response:
        """POST a signed status callback (MessageStatus delivered/failed/..., ErrorCode) to url."""
        params, headers = self.status_callback(url, message_sid, status, error_code)
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.post(url, data=params, headers=headers)
