"""Fitbit Web API (legacy) pull client: GET a resource after a subscription notification.

Wire format: vendor-formats.md §2.5-2.6. Bearer token on every call; the token endpoint takes the
client credentials as HTTP Basic auth and a form body grant_type=refresh_token&refresh_token=...
Refresh tokens are single-use (see vendor_oauth). A 401 `expired_token`/`invalid_token` refreshes
once; 429 carries Retry-After and Fitbit-Rate-Limit-Reset; 410 Gone is the announced shutdown.
"""

from __future__ import annotations

import httpx

from services.ingest.adapters.vendor_oauth import OAuthApiClient, error_type_of

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


class FitbitApiClient(OAuthApiClient):
    """Fetch Fitbit resources for a user, refreshing the token pair when needed."""

    VENDOR = VENDOR
    DEFAULT_BASE_URL = FITBIT_API_BASE_URL
    DEFAULT_TOKEN_URL = FITBIT_TOKEN_URL
    AUTH_METHOD = "client_secret_basic"

    @staticmethod
    def refreshable(response: httpx.Response) -> bool:
        """A 401 `expired_token` / `invalid_token` is worth one refresh."""
        return error_type_of(response) in _REFRESHABLE_401
