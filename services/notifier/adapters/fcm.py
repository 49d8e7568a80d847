"""Firebase Cloud Messaging HTTP v1 adapter: messages:send with a service account's OAuth2 token.

The access token comes from the service account's `token_uri` with the JWT-bearer grant (RFC 7523),
the assertion signed RS256 with its private key, and is reused until a minute before it expires.
Docs: https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send,
https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode,
https://developers.google.com/identity/protocols/oauth2/service-account#httprest
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
from joserfc import jwt
from joserfc.jwk import RSAKey

from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from services.notifier.ports import Channel, Delivery, Receipt

log = structlog.get_logger(__name__)

FCM_API_BASE_URL = "https://fcm.googleapis.com"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600  # Google's maximum
REFRESH_MARGIN_S = 60.0
# errorCode values meaning this registration token will never work for us again.
DEAD_TOKEN_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
TRANSIENT_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})
QUOTA_MIN_BACKOFF_S = 60.0  # firebase.google.com/docs/cloud-messaging/scale-fcm#errors


@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a Google service-account key file that FCM sending needs."""

    project_id: str
    client_email: str
    private_key_id: str
    private_key: str = field(repr=False)  # PEM
    token_uri: str


def load_service_account(path: str | Path) -> ServiceAccount:
    """Read a service-account JSON key file (FCM_CREDENTIALS_FILE)."""
    info = json.loads(Path(path).read_text())
    if info.get("type") != "service_account":
        raise ValueError(f"{path} is not a service-account key file")
    return ServiceAccount(
        project_id=info["project_id"],
        client_email=info["client_email"],
        private_key_id=info["private_key_id"],
        private_key=info["private_key"],
        token_uri=info["token_uri"],
    )


class FcmPushSender:
    """Push to one FCM registration token per delivery; provider_ref is FCM's message name."""

    channel = Channel.PUSH

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        account: ServiceAccount,
        api_base_url: str = FCM_API_BASE_URL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._account = account
        self._key = RSAKey.import_key(account.private_key)
        self._url = f"{api_base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def send(self, delivery: Delivery) -> Receipt:
        """Send the push; on 401 refresh the access token once and try again."""
        started = time.perf_counter()
        body = {"message": push_message(delivery)}
        response = await self._post(body, await self._access_token())
        if response.status_code == 401:
            log.info("fcm_token_rejected", channel=self.channel.value, status=401)
            response = await self._post(body, await self._access_token(refresh=True))
        if response.status_code == 200:
            name = _json(response).get("name", "")
            log.info("fcm_message_sent", channel=self.channel.value, status=200)
            return Receipt(provider_ref=str(name), latency_s=time.perf_counter() - started)
        raise _failure(response)

    async def _post(self, body: dict[str, Any], token: str) -> httpx.Response:
        try:
            return await self._client.post(
                self._url, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            log.warning("fcm_unreachable", channel=self.channel.value, error=type(exc).__name__)
            raise TransientDeliveryError(f"fcm unreachable: {type(exc).__name__}") from exc

    async def _access_token(self, *, refresh: bool = False) -> str:
        """The cached access token, or a new one when asked, absent or about to expire."""
        stale = self._token
        async with self._lock:
            if self._token is not None and not (refresh and self._token == stale):
                if self._clock() < self._expires_at - REFRESH_MARGIN_S:
                    return self._token
            self._token, self._expires_at = await self._fetch_token()
            return self._token

    async def _fetch_token(self) -> tuple[str, float]:
        """Exchange a signed assertion for an access token at the account's token_uri."""
        now = int(self._clock())
        claims = {
            "iss": self._account.client_email,
            "scope": FCM_SCOPE,
            "aud": self._account.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        }
        header = {"alg": "RS256", "typ": "JWT", "kid": self._account.private_key_id}
        form = {"grant_type": JWT_BEARER, "assertion": jwt.encode(header, claims, self._key)}
        try:
            response = await self._client.post(self._account.token_uri, data=form)
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(
                f"token endpoint unreachable: {type(exc).__name__}"
            ) from exc
        payload = _json(response)
        if response.status_code == 200 and isinstance(payload.get("access_token"), str):
            return payload["access_token"], now + _lifetime(payload.get("expires_in"))
        error = str(payload.get("error") or f"http_{response.status_code}")
        log.warning("fcm_token_refused", channel="push", status=response.status_code, code=error)
        if response.status_code >= 500:
            raise TransientDeliveryError(f"token endpoint answered HTTP {response.status_code}")
        raise PermanentDeliveryError(f"token endpoint refused: {error}", code=error)


def push_message(delivery: Delivery) -> dict[str, Any]:
    """Build the FCM v1 `message` for one registration token: notification, data, priorities."""
    notification = {"body": delivery.text}
    if delivery.title:
        notification["title"] = delivery.title
    message: dict[str, Any] = {
        "token": delivery.recipient,
        "notification": notification,
        "android": {"priority": "high"},
        "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default"}}},
    }
    if delivery.data:
        message["data"] = dict(delivery.data)
    return message


def _failure(response: httpx.Response) -> PermanentDeliveryError | TransientDeliveryError:
    """Classify Google's error body: details[FcmError].errorCode first, then the RPC status."""
    error = _json(response).get("error")
    error = error if isinstance(error, dict) else {}
    code = str(error.get("status") or f"http_{response.status_code}")
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("FcmError"):
            code = str(detail.get("errorCode") or code)
    status = response.status_code
    log.warning("fcm_delivery_failed", channel="push", status=status, code=code)
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        retry_after = _seconds(response.headers.get("Retry-After"))
        if code == "QUOTA_EXCEEDED" or status == 429:
            # FCM: back off at least one minute after a quota error (a rate limit: no attempt used).
            retry_after = max(QUOTA_MIN_BACKOFF_S, retry_after or 0.0)
        return TransientDeliveryError(f"fcm: {code}", retry_after_s=retry_after)
    return PermanentDeliveryError(
        f"fcm refused: {code}", code=code, disable_recipient=code in DEAD_TOKEN_CODES
    )


def _lifetime(expires_in: object) -> float:
    """The token's `expires_in` in seconds; a transient error when it is not a positive number."""
    if expires_in is None:
        return float(ASSERTION_LIFETIME_S)
    try:
        seconds = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        log.warning("fcm_token_refused", channel="push", status=200, code="bad_expires_in")
        raise TransientDeliveryError("token endpoint answered a non-numeric expires_in")
    return seconds


def _json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object answered, or {} when the body is something else."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _seconds(value: str | None) -> float | None:
    """Parse a Retry-After header given in seconds; None when absent or not a number."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
