"""A local Google Health API fake: OAuth refresh, data-point listing, quota, signed webhooks.

Token endpoint as Google's (https://oauth2.googleapis.com/token): client credentials in the form
body (or HTTP Basic); 401 invalid_client otherwise; a refresh answers a new access token and no
refresh token (Google's refresh tokens are reusable) until the grant is revoked (400
invalid_grant). Data points: `GET /v4/users/{user}/dataTypes/{dataType}/dataPoints` with
`pageSize` (default 1440, or `page_size` for tests; max 10000), `pageToken` and a sample-time `filter`, answering
`{"dataPoints": [...], "nextPageToken": ...}` (Google's v4 REST reference; not in
vendor-formats.md). Errors are `{"error": {"code", "message", "status"}}`; an expired or unknown
access token gets 401 UNAUTHENTICATED with `WWW-Authenticate: Bearer ... error="invalid_token"`
(as other Google APIs; unconfirmed for this one). Webhook bodies are signed with an ECDSA P-256
key: the header name (X-HEALTHAPI-SIGNATURE) and the encoding (Base64 of the DER signature over
the raw body, SHA-256) are unconfirmed (vendor-formats.md §3).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

SIGNATURE_HEADER = "X-HEALTHAPI-SIGNATURE"
_SAMPLE_FIELDS = {"heart-rate": "heartRate", "oxygen-saturation": "oxygenSaturation"}
_FILTER_TERM = re.compile(r'(\w+)\.sample_time\.physical_time\s*(>=|<)\s*"([^"]+)"')


async def _form(request: Request) -> dict[str, str]:
    """The form body, parsed by hand (starlette's parser needs python-multipart); {} if not one."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


@dataclass(frozen=True)
class GoogleRequest:
    """One request the fake answered (tokens included: this is test data)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    bearer: str | None = None
    form: dict[str, str] = field(default_factory=dict)


def _error(code: int, status: str, message: str, **headers: str) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "status": status}}
    return JSONResponse(body, status_code=code, headers=headers)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sample_time(at: str) -> dict[str, str]:
    return {"physicalTime": at, "utcOffset": "0s"}


def heart_rate_point(user: str, point_id: str, *, bpm: int, at: str) -> dict[str, Any]:
    """A heart-rate DataPoint as listed (int64 beatsPerMinute is a JSON string)."""
    return {
        "name": f"users/{user}/dataTypes/heart-rate/dataPoints/{point_id}",
        "heartRate": {"beatsPerMinute": str(bpm), "sampleTime": _sample_time(at)},
    }


def oxygen_saturation_point(user: str, point_id: str, *, percent: float, at: str) -> dict[str, Any]:
    """An oxygen-saturation DataPoint as listed (percentage on 0-100)."""
    return {
        "name": f"users/{user}/dataTypes/oxygen-saturation/dataPoints/{point_id}",
        "oxygenSaturation": {"percentage": percent, "sampleTime": _sample_time(at)},
    }


@dataclass
class FakeGoogleHealth:
    """Run with start(); seed with grant()/add_points(); calls land in requests."""

    client_id: str = "test-client.apps.googleusercontent.com"
    client_secret: str = "test-google-secret"
    endpoint_secret: str = "test-webhook-secret"
    access_token_ttl_s: int = 3599
    rate_limit_next: int = 0
    retry_after_s: int | None = None  # None: 429 without Retry-After (unconfirmed either way)
    page_size: int = 1440  # the page size when the request names none
    requests: list[GoogleRequest] = field(default_factory=list)
    port: int = 0
    _key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadedServer | None = None
    _access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> user, expiry
    _grants: dict[str, str] = field(default_factory=dict)  # refresh token -> user
    _points: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Value for GOOGLE_HEALTH_API_BASE_URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        """Value for the Google token URL."""
        return f"{self.base_url}/token"

    @property
    def public_key_pem(self) -> str:
        """PEM (SubjectPublicKeyInfo) of the key that signs webhook bodies."""
        return (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def start(self) -> FakeGoogleHealth:
        """Serve on a free loopback port in a background thread."""
        routes = [
            Route("/token", self._token, methods=["POST"]),
            Route("/v4/users/{user}/dataTypes/{data_type}/dataPoints", self._list, methods=["GET"]),
        ]
        self._server = ThreadedServer(Starlette(routes=routes), name="GoogleHealth", port=self.port)
        self.port = self._server.port
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()

    def wait_for(self, predicate: Callable[[list[GoogleRequest]], bool], timeout: float) -> bool:
        """Block until predicate(requests) holds or the timeout passes; return whether it held."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.requests), timeout=timeout)

    def token_requests(self) -> list[GoogleRequest]:
        """Requests to the token endpoint, in arrival order."""
        with self._cond:
            return [r for r in self.requests if r.path == "/token"]

    def grant(self, user: str, *, expires_in: int | None = None) -> dict[str, Any]:
        """Issue a user's first tokens as the code exchange would; return Google's answer."""
        with self._cond:
            answer = self._issue(user, expires_in)
            answer["refresh_token"] = f"gh-rt-{secrets.token_urlsafe(12)}"
            self._grants[answer["refresh_token"]] = user
            return answer

    def revoke(self, user: str) -> None:
        """Revoke the user's grant: refresh answers invalid_grant, access tokens stop working."""
        with self._cond:
            self._grants = {rt: u for rt, u in self._grants.items() if u != user}
            self._access = {t: (u, e) for t, (u, e) in self._access.items() if u != user}

    def expire_access_tokens(self, user: str) -> None:
        """Make every access token of `user` expired (the grant stays valid)."""
        with self._cond:
            self._access = {
                t: (u, time.time() - 1 if u == user else e) for t, (u, e) in self._access.items()
            }

    def add_points(self, user: str, data_type: str, points: list[dict[str, Any]]) -> None:
        """Script data points of a kebab-case data type for a health user id."""
        with self._cond:
            self._points.setdefault((user, data_type), []).extend(points)

    def sign(self, body: bytes) -> str:
        """Signature header value for a raw webhook body (see the module docstring)."""
        return base64.b64encode(self._key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()

    def notification(
        self, user: str, data_type: str, *, start: str, end: str, operation: str = "UPSERT"
    ) -> bytes:
        """Raw body of a one-entry webhook notification (vendor-formats.md §3 shape)."""
        data = {
            "healthUserId": user,
            "operation": operation,
            "dataType": data_type,
            "intervals": [{"physicalTimeInterval": {"startTime": start, "endTime": end}}],
            "clientProvidedSubscriptionName": f"projects/test/subscribers/fake/subscriptions/{user}",
            "version": "1",
        }
        return json.dumps([{"data": data}], separators=(",", ":")).encode()

    def webhook_headers(self, body: bytes) -> dict[str, str]:
        """Headers Google sends with a notification: JSON, the echoed secret, the signature."""
        return {
            "Content-Type": "application/json",
            "Authorization": self.endpoint_secret,
            SIGNATURE_HEADER: self.sign(body),
        }

    def _issue(self, user: str, expires_in: int | None) -> dict[str, Any]:
        ttl = self.access_token_ttl_s if expires_in is None else expires_in
        token = f"gh-at-{secrets.token_urlsafe(12)}"
        self._access[token] = (user, time.time() + ttl)
        scope = (
            "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly"
        )
        return {"access_token": token, "expires_in": ttl, "scope": scope, "token_type": "Bearer"}

    def _record(self, request: Request, status: int, **extra: Any) -> None:
        query = dict(request.query_params)
        with self._cond:
            self.requests.append(
                GoogleRequest(request.method, request.url.path, query, status, **extra)
            )
            self._cond.notify_all()

    def _client_ok(self, request: Request, form: dict[str, str]) -> bool:
        given = f"{form.get('client_id')}:{form.get('client_secret')}"
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme == "Basic":
            try:
                given = base64.b64decode(encoded, validate=True).decode()
            except ValueError:
                return False
        return given == f"{self.client_id}:{self.client_secret}"

    async def _token(self, request: Request) -> Response:
        form = await _form(request)
        response = self._token_answer(request, form)
        self._record(request, response.status_code, form=form)
        return response

    def _token_answer(self, request: Request, form: dict[str, str]) -> Response:
        if not self._client_ok(request, form):
            body = {"error": "invalid_client", "error_description": "Unauthorized"}
            return JSONResponse(body, status_code=401)
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        with self._cond:
            user = self._grants.get(form.get("refresh_token", ""))
            if user is None:
                body = {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
                return JSONResponse(body, status_code=400)
            return JSONResponse(self._issue(user, None))

    async def _list(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        response = self._list_answer(request, token)
        self._record(request, response.status_code, bearer=token or None)
        return response

    def _authorize(self, token: str) -> str | Response:
        with self._cond:
            owner, expiry = self._access.get(token, (None, 0.0))
        if owner is None or expiry <= time.time():
            challenge = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
            message = "Request had invalid authentication credentials."
            return _error(401, "UNAUTHENTICATED", message, **{"WWW-Authenticate": challenge})
        return owner

    def _limited(self) -> Response | None:
        with self._cond:
            if self.rate_limit_next <= 0:
                return None
            self.rate_limit_next -= 1
        headers = {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}
        return _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric.", **headers)

    def _list_answer(self, request: Request, token: str) -> Response:
        owner = self._authorize(token)
        if isinstance(owner, Response):
            return owner
        limited = self._limited()
        if limited is not None:
            return limited
        user, data_type = request.path_params["user"], request.path_params["data_type"]
        if user not in ("me", owner):
            return _error(403, "PERMISSION_DENIED", "The caller does not have permission.")
        if data_type not in _SAMPLE_FIELDS:
            return _error(400, "INVALID_ARGUMENT", f"Unsupported data type: {data_type}")
        with self._cond:
            points = list(self._points.get((owner, data_type), []))
        kept = self._filtered(points, data_type, request.query_params.get("filter", ""))
        if kept is None:
            return _error(400, "INVALID_ARGUMENT", "Invalid filter.")
        return self._page(kept, request, self.page_size)

    @staticmethod
    def _filtered(
        points: list[dict[str, Any]], data_type: str, expr: str
    ) -> list[dict[str, Any]] | None:
        """Apply `<type>.sample_time.physical_time >= "t" AND ... < "t"`; None if unsupported."""
        bounds = []
        for term in [t.strip() for t in expr.split(" AND ")] if expr.strip() else []:
            m = _FILTER_TERM.fullmatch(term)
            if m is None or m.group(1) != data_type.replace("-", "_"):
                return None
            try:
                bounds.append((m.group(2), _instant(m.group(3))))
            except ValueError:
                return None
        field_name = _SAMPLE_FIELDS[data_type]
        timed = [(_instant(p[field_name]["sampleTime"]["physicalTime"]), p) for p in points]
        kept = [
            (at, p)
            for at, p in timed
            if all(at >= bound if op == ">=" else at < bound for op, bound in bounds)
        ]
        return [p for _, p in sorted(kept, key=lambda pair: pair[0])]

    @staticmethod
    def _page(points: list[dict[str, Any]], request: Request, default_size: int) -> Response:
        try:
            size = int(request.query_params.get("pageSize") or "0")
            offset = int(request.query_params.get("pageToken") or "0")
        except ValueError:
            return _error(400, "INVALID_ARGUMENT", "Invalid pageSize or pageToken.")
        size = min(size, 10000) if size > 0 else default_size
        body: dict[str, Any] = {"dataPoints": points[offset : offset + size]}
        if offset + size < len(points):
            body["nextPageToken"] = str(offset + size)
        return JSONResponse(body)
