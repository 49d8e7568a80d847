"""Garmin Health API ping/pull: fetch the callbackURL a ping notification carries.

A ping body names the URL to fetch (vendor-formats.md §4.1: `callbackURL`, e.g.
https://apis.garmin.com/wellness-api/rest/dailies?...&token=...). The body is not signed, so
the URL is attacker-controlled input: only URLs on the configured GARMIN_API_BASE_URL's origin
(scheme, host and port) are fetched, without credentials in the URL and without following
redirects. Unconfirmed (partner-gated spec): the callbackURL's query parameters, and whether the
user's OAuth 2.0 access token must accompany the pull (`access_token` sends it as a bearer).
"""

from __future__ import annotations

import httpx
import structlog

from services.ingest.adapters.vendor_oauth import (
    JsonDocument,
    VendorError,
    VendorUnavailableError,
    json_or_raise,
)

log = structlog.get_logger(__name__)

GARMIN_API_BASE_URL = "https://apis.garmin.com"
VENDOR = "garmin"


class UntrustedCallbackError(VendorError, ValueError):
    """The callback URL is not on Garmin's configured origin; it was not fetched."""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port  # httpx lowercases and drops default ports


def trusted_callback_url(url: str, *, base_url: str) -> httpx.URL:
    """Parse `url`; raise UntrustedCallbackError unless it is on base_url's origin."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UntrustedCallbackError("callback URL does not parse") from exc
    if (
        parsed.scheme not in ("http", "https")
        or parsed.userinfo
        or _origin(parsed) != _origin(httpx.URL(base_url))
    ):
        raise UntrustedCallbackError("callback URL is not on the Garmin API origin")
    return parsed


class GarminApiClient:
    """Pull summaries from the callback URLs of Garmin ping notifications."""

    def __init__(self, *, http: httpx.AsyncClient, base_url: str = GARMIN_API_BASE_URL) -> None:
        self._http = http
        self._base_url = base_url

    async def fetch_callback(self, url: str, *, access_token: str | None = None) -> JsonDocument:
        """GET a ping's callbackURL (same origin only) and return its JSON."""
        try:
            target = trusted_callback_url(url, base_url=self._base_url)
        except UntrustedCallbackError:
            log.warning("vendor_callback_refused", vendor=VENDOR)
            raise
        headers = {"Accept": "application/json"}
        if access_token:
            headers["Authorization"] = f"Bearer {access_token}"
        try:
            response = await self._http.get(target, headers=headers, follow_redirects=False)
        except httpx.TransportError as exc:
            log.warning("vendor_unreachable", vendor=VENDOR)
            raise VendorUnavailableError(f"{VENDOR}: unreachable") from exc
        return json_or_raise(response, vendor=VENDOR)
