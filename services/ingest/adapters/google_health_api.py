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
    OAuthApiClient,
    OAuthTokens,
    error_type_of,
)

GOOGLE_HEALTH_API_BASE_URL = "https://health.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
VENDOR = "google_health"


def data_points_path(data_type: str, *, user: str = "me") -> str:
    """Path of a data type's data-point collection (kebab-case type, e.g. heart-rate)."""
    return f"/v4/users/{user}/dataTypes/{data_type}/dataPoints"


class GoogleHealthApiClient(OAuthApiClient):
    """Fetch Google Health API resources for a user, refreshing the access token when needed."""

    VENDOR = VENDOR
    DEFAULT_BASE_URL = GOOGLE_HEALTH_API_BASE_URL
    DEFAULT_TOKEN_URL = GOOGLE_TOKEN_URL
    AUTH_METHOD = "client_secret_post"

    @staticmethod
    def refreshable(response: httpx.Response) -> bool:
        """A 401 UNAUTHENTICATED or an `invalid_token` challenge is worth one refresh."""
        challenge = response.headers.get("www-authenticate", "")
        return 'error="invalid_token"' in challenge or error_type_of(response) == "UNAUTHENTICATED"

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
