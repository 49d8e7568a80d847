"""Google Health API (Fitbit's successor) pull client: list data points after a notification.

Not in vendor-formats.md (which covers only webhooks, scopes and rate limits, §3); taken from
Google's v4 REST reference (developers.google.com/health/reference/rest/v4, "breaking changes may
occur" banner): `GET /v4/users/{user}/dataTypes/{dataType}/dataPoints` with optional `filter`
(AIP-160, e.g. `heart_rate.sample_time.physical_time >= "2026-05-01T10:00:00Z"`), `pageSize`
(default 1440, max 10000) and `pageToken`; answer `{"dataPoints": [...], "nextPageToken": "..."}`.
Tokens come from Google's endpoint with client_id/client_secret in the form body. Errors use
Google's `{"error": {"code", "message", "status"}}`; 429 is RESOURCE_EXHAUSTED (300 requests per
user per minute). Unconfirmed: whether 429 carries Retry-After (default wait 60 s), and that an
expired token answers 401 UNAUTHENTICATED with `WWW-Authenticate: ... error="invalid_token"` as
other Google APIs do (either marks the 401 as refreshable here).
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

GOOGLE_HEALTH_API_BASE_URL = "https://health.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
VENDOR = "google_health"


def data_points_path(data_type: str, *, user: str = "me") -> str:
    """Path of a data type's data-point collection (kebab-case type, e.g. heart-rate)."""
    return f"/v4/users/{user}/dataTypes/{data_type}/dataPoints"


def _refreshable(response: httpx.Response) -> bool:
    challenge = response.headers.get("www-authenticate", "")
    return 'error="invalid_token"' in challenge or error_type_of(response) == "UNAUTHENTICATED"


class GoogleHealthApiClient:
    """Fetch Google Health API resources for a user, refreshing the access token when needed."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        client_id: str,
        client_secret: str,
        save_tokens: SaveTokens,
        base_url: str = GOOGLE_HEALTH_API_BASE_URL,
        token_url: str = GOOGLE_TOKEN_URL,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._refresher = TokenRefresher(
            vendor=VENDOR,
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            auth_method="client_secret_post",
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

    async def list_data_points(
        self,
        *,
        vendor_user: str,
        tokens: OAuthTokens,
        data_type: str,
        filter_expr: str | None = None,
        page_token: str | None = None,
    ) -> tuple[JsonDocument, OAuthTokens]:
        """List one page of a data type's points for the token's user (users/me)."""
        params = {"filter": filter_expr} if filter_expr else {}
        if page_token:
            params["pageToken"] = page_token
        return await self.get_json(
            vendor_user=vendor_user,
            tokens=tokens,
            path=data_points_path(data_type),
            params=params or None,
        )
