"""Fitbit Web API (legacy) pull client: GET a resource after a subscription notification.

Wire format: vendor-formats.md §2.5-2.6. Bearer token on every call; the token endpoint takes the
client credentials as HTTP Basic auth and a form body grant_type=refresh_token&refresh_token=...
Refresh tokens are single-use (see vendor_oauth). A 401 `expired_token`/`invalid_token` refreshes
once; 429 carries Retry-After and Fitbit-Rate-Limit-Reset; 410 Gone is the announced shutdown.
"""

from __future__ import annotations

import httpx

from services.ingest.adapters.vendor_oauth import (
    JsonDocument,
    OAuthTokens,
    SaveTokens,
    TokenRefresher,
    error_type_of,
    get_with_refresh,
)

FITBIT_API_BASE_URL = "https://api.fitbit.com"
FITBIT_TOKEN_URL = "https://api.fitbit.com/oauth2/token"  # noqa: S105 (a URL, not a secret)
VENDOR = "fitbit"
_REFRESHABLE_401 = frozenset({"expired_token", "invalid_token"})


def heart_rate_intraday_path(date: str, *, detail: str = "1min", user: str = "-") -> str:
    """Path of a day's intraday heart rate (detail 1sec|1min|5min|15min)."""
    return f"/1/user/{user}/activities/heart/date/{date}/1d/{detail}.json"


def spo2_intraday_path(date: str, *, user: str = "-") -> str:
    """Path of a night's intraday SpO2 (the date is usually the morning after the sleep)."""
    return f"/1/user/{user}/spo2/date/{date}/all.json"


def _refreshable(response: httpx.Response) -> bool:
    return error_type_of(response) in _REFRESHABLE_401


class FitbitApiClient:
    """Fetch Fitbit resources for a user, refreshing the token pair when needed."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        client_id: str,
        client_secret: str,
        save_tokens: SaveTokens,
        base_url: str = FITBIT_API_BASE_URL,
        token_url: str = FITBIT_TOKEN_URL,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._refresher = TokenRefresher(
            vendor=VENDOR,
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            auth_method="client_secret_basic",
            save_tokens=save_tokens,
            timeout=http.timeout,
        )

    async def get_json(
        self,
        *,
        vendor_user: str,
        tokens: OAuthTokens,
        path: str,
        params: dict[str, str] | None = None,
    ) -> tuple[JsonDocument, OAuthTokens]:
        """GET base_url + path; return the JSON and the tokens now in force."""
        return await get_with_refresh(
            http=self._http,
            refresher=self._refresher,
            vendor_user=vendor_user,
            tokens=tokens,
            url=self._base_url + path,
            params=params,
            refreshable=_refreshable,
        )
