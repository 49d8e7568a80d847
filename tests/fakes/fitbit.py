"""A local Fitbit Web API fake: OAuth refresh, heart-rate, SpO2 and glucose reads, limits, shutdown.

Wire format per shared/reference/vendor-formats.md §2.4-2.6. Token endpoint: HTTP Basic client
auth (401 invalid_client otherwise), grant_type=refresh_token; one active refresh token per user,
single-use: reusing it answers 400 invalid_grant. Fitbit documents that a repeated identical
refresh returns the same answer until the new tokens are used; `refresh_grace` (on by default)
models that, off makes every reuse fail. Resources: 401 `expired_token` for an expired access
token, `invalid_token` for an unknown one; `rate_limit_next` answers 429 with Retry-After and the
Fitbit-Rate-Limit-* headers; users in `gone_users` get 410. Unconfirmed shapes (no public
example): the 429/410/403 bodies and the answer for a date with no data. Blood glucose is
stored in mg/dL and answered the way Fitbit's units follow `Accept-Language` (§2.5): US units
(mg/dL) only for `en_US`, METRIC units (mmol/L, mg/dL / 18.016, one decimal) for any other
locale or none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date as Date
from statistics import fmean
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

_HEART = re.compile(r"activities/heart/date/([^/]+)/1d/(1sec|1min|5min|15min)\.json")
_SPO2 = re.compile(r"spo2/date/([^/]+?)(?:/([^/]+?))?(/all)?\.json")
_GLUCOSE = re.compile(r"health/metrics/glucose/values/([^/]+)/([^/]+)\.json")
_MG_DL_PER_MMOL_L = 18.016
_ZONES = (("Out of Range", 30, 97), ("Fat Burn", 97, 135), ("Cardio", 135, 164), ("Peak", 164, 220))


async def _form(request: Request) -> dict[str, str]:
    """The form body, parsed by hand (starlette's parser needs python-multipart); {} if not one."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


@dataclass(frozen=True)
class FitbitRequest:
    """One request the fake answered (tokens included: this is test data)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    bearer: str | None = None
    form: dict[str, str] = field(default_factory=dict)
    accept_language: str | None = None


def _errors(status: int, error_type: str, message: str, **headers: str) -> JSONResponse:
    body = {"errors": [{"errorType": error_type, "message": message}], "success": False}
    return JSONResponse(body, status_code=status, headers=headers)


def _valid_date(text: str) -> bool:
    try:
        Date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


@dataclass
class FakeFitbit:
    """Run with start(); seed with grant()/set_heart_rate()/set_spo2(); calls land in requests."""

    client_id: str = "23TEST"
    client_secret: str = "test-client-secret"
    access_token_ttl_s: int = 28800
    refresh_grace: bool = True
    rate_limit_next: int = 0
    retry_after_s: int | None = 60  # None: send only Fitbit-Rate-Limit-Reset
    rate_limit_reset_s: int = 60
    gone_users: set[str] = field(default_factory=set)
    requests: list[FitbitRequest] = field(default_factory=list)
    port: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadedServer | None = None
    _access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> user, expiry
    _refresh: dict[str, str] = field(default_factory=dict)  # user -> its one active refresh token
    _grace: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    _heart: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)
    _resting: dict[tuple[str, str], int] = field(default_factory=dict)
    _spo2: dict[tuple[str, str], list[tuple[str, float]]] = field(default_factory=dict)
    _glucose: dict[tuple[str, str], list[tuple[str, float, str]]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Value for FITBIT_API_BASE_URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        """Value for the Fitbit token URL."""
        return f"{self.base_url}/oauth2/token"

    def start(self) -> FakeFitbit:
        """Serve on a free loopback port in a background thread."""
        routes = [
            Route("/oauth2/token", self._token, methods=["POST"]),
            Route("/1/user/{user}/{rest:path}", self._resource, methods=["GET"]),
        ]
        self._server = ThreadedServer(Starlette(routes=routes), name="Fitbit", port=self.port)
        self.port = self._server.port
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()

    def wait_for(self, predicate: Callable[[list[FitbitRequest]], bool], timeout: float) -> bool:
        """Block until predicate(requests) holds or the timeout passes; return whether it held."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.requests), timeout=timeout)

    def token_requests(self) -> list[FitbitRequest]:
        """Requests to the token endpoint, in arrival order."""
        with self._cond:
            return [r for r in self.requests if r.path == "/oauth2/token"]

    def grant(self, user: str, *, expires_in: int | None = None) -> dict[str, Any]:
        """Issue a user's first pair as the code grant would; return Fitbit's token answer."""
        with self._cond:
            return self._issue(user, expires_in)

    def expire_access_tokens(self, user: str) -> None:
        """Make every access token of `user` expired (its refresh token stays valid)."""
        with self._cond:
            for token, (owner, _) in list(self._access.items()):
                if owner == user:
                    self._access[token] = (owner, time.time() - 1)

    def set_heart_rate(
        self, user: str, day: str, samples: list[tuple[str, int]], *, resting: int | None = None
    ) -> None:
        """Script a day's heart rate as (HH:mm:ss local time, bpm) samples."""
        with self._cond:
            self._heart[(user, day)] = sorted(samples)
            if resting is not None:
                self._resting[(user, day)] = resting

    def set_spo2(self, user: str, day: str, minutes: list[tuple[str, float]]) -> None:
        """Script a night's SpO2 as (yyyy-MM-ddTHH:mm:ss, %) samples, filed under `day`."""
        with self._cond:
            self._spo2[(user, day)] = sorted(minutes)

    def set_glucose(self, user: str, day: str, values: list[tuple[str, float, str]]) -> None:
        """Script a day's glucose as (yyyy-MM-ddTHH:mm:ss local, mg/dL, measurementType)."""
        with self._cond:
            self._glucose[(user, day)] = sorted(values)

    def sign(self, body: bytes) -> str:
        """X-Fitbit-Signature of a raw body: Base64(HMAC-SHA1(body, client_secret + '&'))."""
        key = f"{self.client_secret}&".encode()
        return base64.b64encode(hmac.new(key, body, hashlib.sha1).digest()).decode()

    @staticmethod
    def notification(
        owner_id: str, date: str, collection: str, *, subscription_id: str | None = None
    ) -> bytes:
        """Raw body of a one-entry subscription notification (a JSON array, no whitespace)."""
        entry = {
            "collectionType": collection,
            "date": date,
            "ownerId": owner_id,
            "ownerType": "user",
            "subscriptionId": subscription_id or f"{owner_id}-{collection}",
        }
        return json.dumps([entry], separators=(",", ":")).encode()

    def _issue(self, user: str, expires_in: int | None) -> dict[str, Any]:
        ttl = self.access_token_ttl_s if expires_in is None else expires_in
        access, refresh = f"fb-at-{secrets.token_urlsafe(12)}", f"fb-rt-{secrets.token_urlsafe(12)}"
        self._access[access] = (user, time.time() + ttl)
        self._refresh[user] = refresh
        return {
            "access_token": access,
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": "heartrate oxygen_saturation",
            "token_type": "Bearer",
            "user_id": user,
        }

    def _record(self, request: Request, status: int, **extra: Any) -> None:
        with self._cond:
            self.requests.append(
                FitbitRequest(
                    request.method, request.url.path, dict(request.query_params), status, **extra
                )
            )
            self._cond.notify_all()

    def _client_ok(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            return False
        expected = f"{self.client_id}:{self.client_secret}"
        return scheme == "Basic" and hmac.compare_digest(decoded, expected)

    async def _token(self, request: Request) -> Response:
        form = await _form(request)
        response = self._token_answer(request, form)
        self._record(request, response.status_code, form=form)
        return response

    def _token_answer(self, request: Request, form: dict[str, str]) -> Response:
        if not self._client_ok(request):
            return _errors(401, "invalid_client", "Invalid authorization header format.")
        if form.get("grant_type") != "refresh_token":
            return _errors(400, "unsupported_grant_type", "Unsupported grant type.")
        given = form.get("refresh_token", "")
        with self._cond:
            replay = [a for old, a in self._grace.values() if old == given and self.refresh_grace]
            if replay:
                return JSONResponse(replay[0])
            user = next((u for u, rt in self._refresh.items() if rt == given), None)
            if user is None or not given:
                return _errors(400, "invalid_grant", f"Refresh token invalid: {given}.")
            expires_in = int(form["expires_in"]) if form.get("expires_in", "").isdigit() else None
            answer = self._issue(user, expires_in)
            self._grace[user] = (given, answer)
        return JSONResponse(answer)

    async def _resource(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        response = self._resource_answer(request, token)
        language = request.headers.get("accept-language")
        self._record(request, response.status_code, bearer=token or None, accept_language=language)
        return response

    def _authorize(self, token: str) -> str | Response:
        with self._cond:
            owner, expiry = self._access.get(token, (None, 0.0))
            if owner is None:
                return _errors(401, "invalid_token", f"Access token invalid: {token}")
            if expiry <= time.time():
                return _errors(401, "expired_token", f"Access token expired: {token}")
            grace = self._grace.get(owner)
            if grace is not None and grace[1]["access_token"] == token:
                del self._grace[owner]  # the new pair is in use: the old refresh token is dead
            return owner

    def _limited(self) -> Response | None:
        with self._cond:
            if self.rate_limit_next <= 0:
                return None
            self.rate_limit_next -= 1
        headers = {
            "Fitbit-Rate-Limit-Limit": "150",
            "Fitbit-Rate-Limit-Remaining": "0",
            "Fitbit-Rate-Limit-Reset": str(self.rate_limit_reset_s),
        }
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return _errors(429, "system", "Too Many Requests", **headers)

    def _resource_answer(self, request: Request, token: str) -> Response:
        owner = self._authorize(token)
        if isinstance(owner, Response):
            return owner
        if owner in self.gone_users:
            return _errors(410, "gone", "The Fitbit Web API is no longer available.")
        limited = self._limited()
        if limited is not None:
            return limited
        if request.path_params["user"] not in ("-", owner):
            return _errors(403, "insufficient_permissions", "No access to this user's data.")
        rest = request.path_params["rest"]
        if heart := _HEART.fullmatch(rest):
            return self._heart_answer(owner, *heart.groups())
        if spo2 := _SPO2.fullmatch(rest):
            start, end, all_ = spo2.groups()
            if end == "all" and all_ is None:
                end, all_ = None, "/all"
            return self._spo2_answer(owner, start, end, intraday=all_ is not None)
        if glucose := _GLUCOSE.fullmatch(rest):
            us_units = request.headers.get("accept-language") == "en_US"
            return self._glucose_answer(owner, *glucose.groups(), us_units=us_units)
        return _errors(404, "not_found", "The API you are requesting could not be found.")

    def _heart_answer(self, user: str, day: str, detail: str) -> Response:
        if not _valid_date(day):
            return _errors(400, "validation", f"Invalid date:{day}")
        with self._cond:
            samples = list(self._heart.get((user, day), []))
            resting = self._resting.get((user, day))
        step = {"1sec": 0, "1min": 1, "5min": 5, "15min": 15}[detail]
        if step:
            buckets: dict[str, list[int]] = {}
            for t, bpm in samples:
                h, m = int(t[:2]), int(t[3:5]) // step * step
                buckets.setdefault(f"{h:02d}:{m:02d}:00", []).append(bpm)
            samples = [(t, round(fmean(v))) for t, v in sorted(buckets.items())]
        zones = [
            {"caloriesOut": 0, "max": hi, "min": lo, "name": name, "minutes": len(minutes)}
            for name, lo, hi in _ZONES
            for minutes in [{t[:5] for t, v in samples if lo <= v < hi}]
        ]
        value: dict[str, Any] = {"customHeartRateZones": [], "heartRateZones": zones}
        if resting is not None:
            value["restingHeartRate"] = resting
        intraday = {
            "dataset": [{"time": t, "value": v} for t, v in samples],
            "datasetInterval": step or 1,
            "datasetType": "minute" if step else "second",
        }
        return JSONResponse(
            {
                "activities-heart": [{"dateTime": day, "value": value}],
                "activities-heart-intraday": intraday,
            }
        )

    def _spo2_answer(self, user: str, start: str, end: str | None, *, intraday: bool) -> Response:
        days = [start] if end is None else [start, end]
        if not all(_valid_date(d) for d in days):
            return _errors(400, "validation", f"Invalid date:{'/'.join(days)}")
        first, last = Date.fromisoformat(days[0]), Date.fromisoformat(days[-1])
        with self._cond:
            found = sorted((d, m) for (u, d), m in self._spo2.items() if u == user and m)
        entries: list[dict[str, Any]] = []
        for day, minutes in found:
            if first <= Date.fromisoformat(day) <= last:
                if intraday:
                    points = [{"value": v, "minute": t} for t, v in minutes]
                    entries.append({"dateTime": day, "minutes": points})
                else:
                    values = [v for _, v in minutes]
                    stats = {"avg": round(fmean(values), 1), "min": min(values), "max": max(values)}
                    entries.append({"dateTime": day, "value": stats})
        if end is not None:
            return JSONResponse(entries)
        return JSONResponse(entries[0] if entries else {})

    def _glucose_answer(self, user: str, start: str, end: str, *, us_units: bool) -> Response:
        if not (_valid_date(start) and _valid_date(end)):
            return _errors(400, "validation", f"Invalid date:{start}/{end}")
        first, last = Date.fromisoformat(start), Date.fromisoformat(end)
        with self._cond:
            found = sorted((d, v) for (u, d), v in self._glucose.items() if u == user and v)
        entries: list[dict[str, Any]] = []
        for day, values in found:
            if not first <= Date.fromisoformat(day) <= last:
                continue
            shown = [
                (t, mg if us_units else round(mg / _MG_DL_PER_MMOL_L, 1), kind)
                for t, mg, kind in values
            ]
            numbers = [v for _, v, _ in shown]
            entries.append(
                {
                    "date": day,
                    "minValue": min(numbers),
                    "maxValue": max(numbers),
                    "numberOfValues": len(numbers),
                    "sumOfValues": sum(numbers),
                    "average": fmean(numbers),
                    "values": [
                        {"dateTime": t, "value": v, "measurementType": k} for t, v, k in shown
                    ],
                }
            )
        return JSONResponse(entries)
