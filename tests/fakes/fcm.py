"""A local Google OAuth2 token endpoint + FCM HTTP v1 messages:send fake, on one loopback server.

Token endpoint (POST /token): the JWT-bearer grant; it verifies the assertion's RS256 signature
with the service account's public key and its iss/aud/scope/iat/exp, and answers
`{"access_token", "expires_in", "token_type": "Bearer"}` or `{"error": "invalid_grant", ...}`.
messages:send (POST /v1/projects/{project}/messages:send): a bearer token it issued (401
UNAUTHENTICATED otherwise), the right project (403), a `message.token`, string data values (400
INVALID_ARGUMENT). Scripted: `unregistered` tokens (404 UNREGISTERED), `invalid_tokens` (400
INVALID_ARGUMENT), `quota_exceeded_next` (429 QUOTA_EXCEEDED), `unavailable_next` (503 UNAVAILABLE),
`revoke_access_tokens()`. `write_service_account` writes a key file whose token_uri is the fake.
Docs: https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode,
https://developers.google.com/identity/protocols/oauth2/service-account#httprest
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def google_error(code: int, status: str, message: str, fcm_code: str | None = None) -> JSONResponse:
    """A Google API error body, with an FcmError detail when fcm_code is given."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if fcm_code:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": fcm_code}]
    return JSONResponse({"error": error}, status_code=code)


@dataclass
class FakeFcm:
    """Run with start(); token grants land in `token_requests`, accepted sends in `sends`."""

    project_id: str = "care-alerts-test"
    client_email: str = "notifier@care-alerts-test.iam.gserviceaccount.com"
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, auto_kid=True))
    token_ttl_s: int = 3599
    unregistered: set[str] = field(default_factory=set)
    invalid_tokens: set[str] = field(default_factory=set)
    quota_exceeded_next: int = 0
    unavailable_next: int = 0
    retry_after_s: int | None = None  # Retry-After on 429/503 when set
    token_requests: list[dict[str, Any]] = field(default_factory=list)  # verified claims
    sends: list[dict[str, Any]] = field(default_factory=list)  # accepted `message` objects
    rejected: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _issued: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        """Value for FCM_API_BASE_URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        """The token endpoint the service-account file points at."""
        return f"{self.base_url}/token"

    def start(self) -> FakeFcm:
        """Serve on a free loopback port in a background thread."""
        routes = [
            Route("/token", self._token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
        ]
        self._server = ThreadedServer(Starlette(routes=routes), name="FCM", port=self.port)
        self.port = self._server.port
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()

    def write_service_account(self, path: Path) -> Path:
        """Write a service-account key file for this fake's key, project and token_uri."""
        info = {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key.kid,
            "private_key": self.key.as_pem(private=True).decode(),
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }
        path.write_text(json.dumps(info))
        return path

    def revoke_access_tokens(self) -> None:
        """Make every access token issued so far invalid (the next send gets 401)."""
        with self._lock:
            self._issued.clear()

    def _reject(self, response: JSONResponse, reason: str) -> JSONResponse:
        with self._lock:
            self.rejected.append({"status": response.status_code, "reason": reason})
        return response

    def _grant_error(self, description: str, error: str = "invalid_grant") -> JSONResponse:
        body = {"error": error, "error_description": description}
        return self._reject(JSONResponse(body, status_code=400), description)

    async def _token(self, request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if form.get("grant_type") != JWT_BEARER:
            return self._grant_error("Invalid grant_type.", "unsupported_grant_type")
        try:
            token = jwt.decode(str(form.get("assertion", "")), self.key, algorithms=["RS256"])
        except (JoseError, ValueError):
            return self._grant_error("Invalid JWT Signature.")
        if problem := self._claims_problem(token.header, token.claims):
            return self._grant_error(problem)
        access = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._issued.add(access)
            self.token_requests.append(token.claims)
        body = {"access_token": access, "expires_in": self.token_ttl_s, "token_type": "Bearer"}
        return JSONResponse(body)

    def _claims_problem(self, header: dict[str, Any], claims: dict[str, Any]) -> str | None:
        """What Google would say is wrong with the assertion, or None."""
        now = time.time()
        if header.get("kid") not in (None, self.key.kid):
            return "Invalid JWT Signature."
        if claims.get("iss") != self.client_email:
            return "Invalid issuer: the service account is unknown."
        if claims.get("aud") != self.token_uri:
            return "Invalid JWT: Failed audience check."
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid JWT: scope does not include firebase.messaging."
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return "Invalid JWT: iat and exp are required."
        if iat > now + 60 or exp <= now or exp - iat > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None

    def _take(self, knob: str) -> bool:
        with self._lock:
            left = getattr(self, knob)
            setattr(self, knob, max(0, left - 1))
        return bool(left > 0)

    def _scripted(self) -> JSONResponse | None:
        retry = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else {}
        if self._take("quota_exceeded_next"):
            response = google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED")
        elif self._take("unavailable_next"):
            response = google_error(
                503, "UNAVAILABLE", "The service is unavailable.", "UNAVAILABLE"
            )
        else:
            return None
        response.headers.update(retry)
        return self._reject(response, "scripted")

    async def _send(self, request: Request) -> JSONResponse:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            authorised = bearer in self._issued
        if not authorised:
            message = (
                "Request had invalid authentication credentials. Expected OAuth 2 access token."
            )
            return self._reject(google_error(401, "UNAUTHENTICATED", message), "bearer")
        if request.path_params["project"] != self.project_id:
            message = "Permission 'cloudmessaging.messages.create' denied on resource."
            return self._reject(google_error(403, "PERMISSION_DENIED", message), "project")
        if scripted := self._scripted():
            return scripted
        try:
            message_obj = json.loads(await request.body())["message"]
        except (ValueError, KeyError, TypeError):
            return self._reject(
                google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload."), "body"
            )
        return self._deliver(message_obj)

    def _deliver(self, message: dict[str, Any]) -> JSONResponse:
        token = message.get("token")
        data = message.get("data", {})
        if not isinstance(token, str) or not token:
            return self._reject(
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Recipient of the message is not set.",
                    "INVALID_ARGUMENT",
                ),
                "token",
            )
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            return self._reject(
                google_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data'."), "data"
            )
        if token in self.unregistered:
            return self._reject(
                google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
                "unregistered",
            )
        if token in self.invalid_tokens:
            message_text = "The registration token is not a valid FCM registration token"
            return self._reject(
                google_error(400, "INVALID_ARGUMENT", message_text, "INVALID_ARGUMENT"), "invalid"
            )
        with self._lock:
            self.sends.append(message)
            name = f"projects/{self.project_id}/messages/0:{len(self.sends)}%{secrets.token_hex(8)}"
        return JSONResponse({"name": name})
