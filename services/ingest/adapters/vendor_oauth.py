"""OAuth 2.0 tokens, refresh and error classification shared by the vendor pull clients.

Fitbit refresh tokens are single-use and each user has one active refresh token
(vendor-formats.md §2.6), so refreshes are serialised per vendor user and the new pair is stored
before it is used: a pair that was used but not persisted would strand the user. Within a process
an asyncio lock serialises them; across replicas `exchange_tokens` holds the stored pair
exclusively (a row lock on PostgreSQL) while the refresh runs, and a replica that finds a newer
pair stored than the one it was asked to replace uses that pair instead of refreshing again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
import structlog
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from services.ingest.errors import IngestError

log = structlog.get_logger(__name__)

JsonDocument = dict[str, Any] | list[Any]
REFRESH_LEEWAY = timedelta(seconds=60)
DEFAULT_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class OAuthTokens:
    """A vendor user's token pair; `expires_at` is the access token's expiry (aware, UTC)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    scope: str = ""


Exchange = Callable[[OAuthTokens | None], Awaitable[OAuthTokens]]
# exchange_tokens(vendor_user, exchange): hold the user's stored pair exclusively (other
# replicas' exchanges for that user wait), call exchange(stored pair or None), store what it
# returns if it differs, release, and return it.
ExchangeTokens = Callable[[str, Exchange], Awaitable[OAuthTokens]]


class VendorError(IngestError):
    """Base of every vendor API error."""


class VendorRateLimitedError(VendorError):
    """HTTP 429: try again after `retry_after_s` seconds."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


class VendorGoneError(VendorError):
    """HTTP 410: the API is shut down for this user or app; the connection needs migrating."""


class VendorAuthError(VendorError):
    """The vendor refused the grant (e.g. invalid_grant): the user must consent again."""


class VendorUnavailableError(VendorError):
    """5xx, a network failure or an unreadable answer: retry later."""


class VendorRequestError(VendorError):
    """Any other refusal; `error_type` is the vendor's error code, never its message."""

    def __init__(self, status: int, error_type: str) -> None:
        super().__init__(f"HTTP {status}: {error_type}")
        self.status = status
        self.error_type = error_type


def _seconds(value: str | None, *, now: datetime) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def retry_after_s(headers: httpx.Headers, *, now: datetime | None = None) -> float:
    """Seconds to wait: the larger of Retry-After and Fitbit-Rate-Limit-Reset, else a default."""
    at = now or datetime.now(UTC)
    waits = [_seconds(headers.get(h), now=at) for h in ("retry-after", "fitbit-rate-limit-reset")]
    known = [w for w in waits if w is not None]
    return max(known) if known else DEFAULT_RETRY_AFTER_S


def error_type_of(response: httpx.Response) -> str:
    """The vendor's error code: Fitbit errors[0].errorType, Google error.status, OAuth error."""
    try:
        body = response.json()
    except ValueError:
        return "unknown"
    if not isinstance(body, dict):
        return "unknown"
    errors, error = body.get("errors"), body.get("error")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("errorType", "unknown"))
    if isinstance(error, dict):
        return str(error.get("status", "unknown"))
    return str(error) if isinstance(error, str) else "unknown"


def raise_for_vendor_status(response: httpx.Response, *, vendor: str) -> None:
    """Raise the matching VendorError for any answer that is not 2xx."""
    status = response.status_code
    if status < 300:
        return
    if status == 429:
        wait = retry_after_s(response.headers)
        log.warning("vendor_rate_limited", vendor=vendor, status=status, retry_after_s=wait)
        raise VendorRateLimitedError(wait)
    log.warning("vendor_request_failed", vendor=vendor, status=status)
    if status == 410:
        raise VendorGoneError(f"{vendor}: HTTP 410")
    if status >= 500:
        raise VendorUnavailableError(f"{vendor}: HTTP {status}")
    raise VendorRequestError(status, error_type_of(response))


def json_or_raise(response: httpx.Response, *, vendor: str) -> JsonDocument:
    """Return the JSON object or array of a 2xx answer; raise a VendorError otherwise."""
    raise_for_vendor_status(response, vendor=vendor)
    try:
        body = response.json()
    except ValueError as exc:
        raise VendorUnavailableError(f"{vendor}: answer is not JSON") from exc
    if not isinstance(body, dict | list):
        raise VendorUnavailableError(f"{vendor}: answer is not a JSON object or array")
    return body


def _tokens_from(token: dict[str, Any], *, vendor: str) -> OAuthTokens:
    try:
        return OAuthTokens(
            access_token=str(token["access_token"]),
            refresh_token=str(token["refresh_token"]),
            expires_at=datetime.fromtimestamp(float(token["expires_at"]), UTC),
            scope=str(token.get("scope", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VendorUnavailableError(f"{vendor}: token answer lacks a field") from exc


class TokenRefresher:
    """Refresh a vendor user's tokens through Authlib, once at a time per user."""

    def __init__(
        self,
        *,
        vendor: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        auth_method: Literal["client_secret_basic", "client_secret_post"],
        exchange_tokens: ExchangeTokens,
        timeout: httpx.Timeout,
    ) -> None:
        self.vendor = vendor
        self._token_url = token_url
        self._client = {"client_id": client_id, "client_secret": client_secret}
        self._auth_method = auth_method
        self._exchange_tokens = exchange_tokens
        self._timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}
        # vendor user -> (refresh token consumed, pair it produced): coalesces concurrent callers
        self._refreshed: dict[str, tuple[str, OAuthTokens]] = {}

    def needs_refresh(self, tokens: OAuthTokens, *, now: datetime | None = None) -> bool:
        """True when the access token expired or expires within the leeway."""
        return tokens.expires_at - (now or datetime.now(UTC)) <= REFRESH_LEEWAY

    async def refresh(self, vendor_user: str, stale: OAuthTokens) -> OAuthTokens:
        """Replace `stale`, storing the new pair first; reuse a pair another caller (in this
        process or another replica) already got for it."""
        async with self._locks.setdefault(vendor_user, asyncio.Lock()):
            done = self._refreshed.get(vendor_user)
            if done is not None:
                consumed, fresh = done
                if (
                    consumed == stale.refresh_token
                    and fresh.access_token != stale.access_token
                    and not self.needs_refresh(fresh)
                ):
                    return fresh

            async def exchange(stored: OAuthTokens | None) -> OAuthTokens:
                newest = stored or stale
                if newest.refresh_token != stale.refresh_token and not self.needs_refresh(newest):
                    log.info("vendor_token_refreshed_elsewhere", vendor=self.vendor)
                    return newest  # another replica refreshed while we waited for the lock
                fresh = await self._request(newest.refresh_token)
                log.info("vendor_token_refreshed", vendor=self.vendor)
                return fresh

            fresh = await self._exchange_tokens(vendor_user, exchange)
            self._refreshed[vendor_user] = (stale.refresh_token, fresh)
            return fresh

    async def _request(self, refresh_token: str) -> OAuthTokens:
        async with AsyncOAuth2Client(
            **self._client, token_endpoint_auth_method=self._auth_method, timeout=self._timeout
        ) as oauth:
            oauth.register_compliance_hook("refresh_token_response", self._check_answer)
            try:
                token = await oauth.refresh_token(self._token_url, refresh_token=refresh_token)
            except httpx.TransportError as exc:
                log.warning("vendor_token_refresh_failed", vendor=self.vendor)
                raise VendorUnavailableError(f"{self.vendor}: token endpoint unreachable") from exc
            except OAuthError as exc:  # a 2xx answer carrying an OAuth error
                raise VendorAuthError(f"{self.vendor}: {exc.error}") from exc
        return _tokens_from(dict(token), vendor=self.vendor)

    def _check_answer(self, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if status in (400, 401) and error_type_of(response) == "invalid_grant":
            log.warning("vendor_token_refresh_refused", vendor=self.vendor, status=status)
            raise VendorAuthError(f"{self.vendor}: refresh refused (invalid_grant)")
        raise_for_vendor_status(response, vendor=self.vendor)
        return response


async def get_with_refresh(
    *,
    http: httpx.AsyncClient,
    refresher: TokenRefresher,
    vendor_user: str,
    tokens: OAuthTokens,
    url: str,
    params: dict[str, str] | None,
    refreshable: Callable[[httpx.Response], bool],
    headers: dict[str, str] | None = None,
) -> tuple[JsonDocument, OAuthTokens]:
    """GET `url` with a bearer token: refresh first if expiring, and once more on a stale 401."""
    if refresher.needs_refresh(tokens):
        tokens = await refresher.refresh(vendor_user, tokens)
    extra = headers or {}
    response = await _get(
        http, url, token=tokens.access_token, params=params, vendor=refresher.vendor, extra=extra
    )
    if response.status_code == 401 and refreshable(response):
        tokens = await refresher.refresh(vendor_user, tokens)
        response = await _get(
            http,
            url,
            token=tokens.access_token,
            params=params,
            vendor=refresher.vendor,
            extra=extra,
        )
        if response.status_code == 401:
            log.warning("vendor_token_rejected", vendor=refresher.vendor, status=401)
            raise VendorAuthError(f"{refresher.vendor}: fresh access token refused")
    return json_or_raise(response, vendor=refresher.vendor), tokens


async def _get(
    http: httpx.AsyncClient,
    url: str,
    *,
    token: str,
    params: dict[str, str] | None,
    vendor: str,
    extra: dict[str, str],
) -> httpx.Response:
    try:
        return await http.get(
            url,
            params=params,
            headers={**extra, "Authorization": f"Bearer {token}", "Accept": "application/json"},
            follow_redirects=False,
        )
    except httpx.TransportError as exc:
        log.warning("vendor_unreachable", vendor=vendor)
        raise VendorUnavailableError(f"{vendor}: unreachable") from exc


class OAuthApiClient:
    """A vendor API reached with a user's bearer token, refreshed when needed; subclasses name
    the vendor, its default URLs, how it takes client credentials and which 401s are stale."""

    VENDOR: str
    DEFAULT_BASE_URL: str
    DEFAULT_TOKEN_URL: str
    AUTH_METHOD: Literal["client_secret_basic", "client_secret_post"]

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        client_id: str,
        client_secret: str,
        exchange_tokens: ExchangeTokens,
        base_url: str | None = None,
        token_url: str | None = None,
    ) -> None:
        self._http = http
        self._base_url = (base_url or self.DEFAULT_BASE_URL).rstrip("/")
        self._refresher = TokenRefresher(
            vendor=self.VENDOR,
            token_url=token_url or self.DEFAULT_TOKEN_URL,
            client_id=client_id,
            client_secret=client_secret,
            auth_method=self.AUTH_METHOD,
            exchange_tokens=exchange_tokens,
            timeout=http.timeout,
        )

    @staticmethod
    def refreshable(response: httpx.Response) -> bool:
        """Say whether a 401 means the access token is stale (so one refresh may help)."""
        raise NotImplementedError

    async def get_json(
        self,
        *,
        vendor_user: str,
        tokens: OAuthTokens,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[JsonDocument, OAuthTokens]:
        """GET base_url + path (with extra `headers`); return the JSON and the tokens in force."""
        return await get_with_refresh(
            http=self._http,
            refresher=self._refresher,
            vendor_user=vendor_user,
            tokens=tokens,
            url=self._base_url + path,
            params=params,
            refreshable=self.refreshable,
            headers=headers,
        )
