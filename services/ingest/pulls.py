"""The pull consumer: vendor-notifications.v1 → fetch the changed data with the user's tokens →
the same vendor pipeline as pushes. A crash between the webhook's 2xx and the pull loses nothing:
the notification stays on the topic until its offset is committed after the pull. A pull the
vendor rate-limits (429) is kept in the deferred-pulls table until Retry-After has passed (the
DeferredPullRelay then puts it back on the topic), so one user's limit never holds up others."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from services.ingest.adapters.connections_store import SqlConnectionStore
from services.ingest.adapters.deferred_pulls import SqlDeferredPullStore
from services.ingest.adapters.fitbit_api import FitbitApiClient
from services.ingest.adapters.garmin_api import GarminApiClient, UntrustedCallbackError
from services.ingest.adapters.google_health_api import GoogleHealthApiClient
from services.ingest.adapters.vendor_oauth import (
    Exchange,
    ExchangeTokens,
    OAuthTokens,
    VendorAuthError,
    VendorGoneError,
    VendorRateLimitedError,
    VendorRequestError,
)
from services.ingest.connections import Connection, ConnectionStatus, Vendor
from services.ingest.vendors import fitbit, garmin, google_health
from services.ingest.vendors.common import PayloadError, VendorSample
from services.ingest.webhook_support import VendorPipeline
from shared.consumer import MessageContext
from shared.events import VendorNotification
from shared.ids import derive_id
from shared.kafka import UnprocessableEventError

log = structlog.get_logger(__name__)
MAX_PAGES = 20


def tokens_from(stored: dict[str, str]) -> OAuthTokens:
    """Rebuild the token pair from its decrypted JSON."""
    return OAuthTokens(
        access_token=stored["access_token"],
        refresh_token=stored["refresh_token"],
        expires_at=datetime.fromisoformat(stored["expires_at"]),
        scope=stored.get("scope", ""),
    )


def tokens_to(tokens: OAuthTokens) -> dict[str, str]:
    """The JSON a token pair is stored as (encrypted)."""
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_at": tokens.expires_at.isoformat(),
        "scope": tokens.scope,
    }


def token_exchanger(store: SqlConnectionStore, vendor: Vendor) -> ExchangeTokens:
    """The pull clients' `exchange_tokens` over the connections store (encrypted, row-locked)."""

    async def exchange_tokens(vendor_user: str, exchange: Exchange) -> OAuthTokens:
        async def on_stored(stored: dict[str, str] | None) -> dict[str, str]:
            return tokens_to(await exchange(tokens_from(stored) if stored else None))

        return tokens_from(await store.exchange_tokens(vendor, vendor_user, on_stored))

    return exchange_tokens


@dataclass
class VendorPuller:
    """Handles one vendor notification per call (the consumer's per-message handler)."""

    pipeline: VendorPipeline
    fitbit: FitbitApiClient | None
    google: GoogleHealthApiClient | None
    garmin: GarminApiClient | None
    deferrals: SqlDeferredPullStore
    max_wait_s: float = 3600.0

    async def on_vendor_notification(self, event: VendorNotification, ctx: MessageContext) -> None:
        """Pull and publish; defer what the vendor rate-limited; dead-letter what can never
        succeed; raise to retry the rest."""
        vendor = Vendor(event.vendor)
        conn: Connection | None = await self.pipeline.connections.find(vendor, event.vendor_user)
        if conn is None:
            raise UnprocessableEventError(
                "unknown_vendor_user", f"{vendor.value} user not connected"
            )
        if conn.status is not ConnectionStatus.ACTIVE:
            log.info(
                "pull_skipped_inactive_connection", vendor=vendor.value, status=conn.status.value
            )
            return
        now = datetime.now(UTC)
        waiting = await self.deferrals.deferred_until(vendor.value, conn.vendor_user, now=now)
        if waiting is not None:  # the vendor asked us to leave this user alone until then
            await self.deferrals.defer(event, not_before=waiting, now=now)
            log.info("vendor_pull_deferred", vendor=vendor.value, reason="user_rate_limited")
            return
        try:
            samples = await self._pull_classified(vendor, conn, event)
        except VendorRateLimitedError as exc:
            # Durable, per user: other users' pulls on this partition go on meanwhile.
            wait, now = min(exc.retry_after_s, self.max_wait_s), datetime.now(UTC)
            await self.deferrals.defer(event, not_before=now + timedelta(seconds=wait), now=now)
            log.warning("vendor_pull_deferred", vendor=vendor.value, retry_after_s=wait)
            return
        # A Garmin pulled body may carry other users' records: each is attributed by its own
        # userId, looked up like a push (unknown ones are dead-lettered, never misattributed).
        known = None if vendor is Vendor.GARMIN else {conn.vendor_user: conn}
        await self.pipeline.publish(vendor=vendor, samples=samples, connections=known)

    async def _pull_classified(
        self, vendor: Vendor, conn: Connection, event: VendorNotification
    ) -> list[VendorSample]:
        """Pull; turn what can never succeed into UnprocessableEventError (after marking the
        connection); VendorRateLimitedError and transient errors pass through."""
        store = self.pipeline.connections
        try:
            return await self._pull(vendor, conn, event)
        except VendorGoneError as exc:
            await store.set_status(
                vendor, conn.vendor_user, ConnectionStatus.NEEDS_MIGRATION, "410 Gone"
            )
            raise UnprocessableEventError(
                "vendor_gone", "legacy API gone: migrate the user"
            ) from exc
        except VendorAuthError as exc:
            await store.set_status(
                vendor, conn.vendor_user, ConnectionStatus.NEEDS_REAUTH, "grant refused"
            )
            raise UnprocessableEventError(
                "vendor_auth_refused", "user must authorize again"
            ) from exc
        except VendorRequestError as exc:
            raise UnprocessableEventError("vendor_request_refused", str(exc)) from exc
        except UntrustedCallbackError as exc:  # never fetchable: retrying would block the partition
            raise UnprocessableEventError("untrusted_callback_url", str(exc)) from exc
        except PayloadError as exc:
            raise UnprocessableEventError(
                "vendor_payload_invalid", f"{exc.field}: {exc.message}"
            ) from exc

    async def _pull(
        self, vendor: Vendor, conn: Connection, event: VendorNotification
    ) -> list[VendorSample]:
        if vendor is Vendor.FITBIT:
            return await self._pull_fitbit(conn, event)
        if vendor is Vendor.GOOGLE_HEALTH:
            return await self._pull_google(conn, event)
        if vendor is Vendor.GARMIN:
            return await self._pull_garmin(event)
        raise UnprocessableEventError("not_pullable", f"{vendor.value} pushes, it is not pulled")

    async def _tokens(self, conn: Connection) -> OAuthTokens:
        stored = await self.pipeline.connections.tokens_of(conn)
        if stored is None:
            raise UnprocessableEventError("no_vendor_tokens", "connection has no tokens")
        return tokens_from(stored)

    async def _pull_fitbit(self, conn: Connection, event: VendorNotification) -> list[VendorSample]:
        if self.fitbit is None:
            raise UnprocessableEventError("vendor_not_configured", "FITBIT_CLIENT_ID/SECRET unset")
        notice = fitbit.FitbitNotification(
            collection_type=event.kind,
            date=date.fromisoformat(event.detail["date"]),
            owner_id=event.vendor_user,
            owner_type="user",
            subscription_id=event.detail.get("subscription_id", ""),
        )
        if conn.utc_offset_minutes is None:  # a connection made before the API required it
            raise UnprocessableEventError(
                "fitbit_utc_offset_unknown",
                "connection has no utc_offset_minutes: Fitbit's local times cannot be placed",
            )
        tokens = await self._tokens(conn)
        offset = timedelta(minutes=conn.utc_offset_minutes)
        samples: list[VendorSample] = []
        for pull in fitbit.pulls_for(notice):
            # The unit system follows Accept-Language: without it Fitbit answers in the user's
            # locale (mmol/L for most of the world) and the mapper would mislabel glucose.
            language = {"Accept-Language": pull.accept_language} if pull.accept_language else {}
            body, tokens = await self.fitbit.get_json(
                vendor_user=conn.vendor_user, tokens=tokens, path=pull.path, headers=language
            )
            samples += fitbit.map_response(pull, body, utc_offset=offset)
        return samples

    async def _pull_google(self, conn: Connection, event: VendorNotification) -> list[VendorSample]:
        if self.google is None:
            raise UnprocessableEventError("vendor_not_configured", "GOOGLE_HEALTH_CLIENT_* unset")
        tokens = await self._tokens(conn)
        samples: list[VendorSample] = []
        page: str | None = event.detail.get("page_token") or None
        for _ in range(MAX_PAGES):
            body, tokens = await self.google.list_data_points(
                vendor_user=conn.vendor_user,
                tokens=tokens,
                data_type=event.kind,
                filter_expr=interval_filter(event.kind, event.detail["start"], event.detail["end"]),
                page_token=page,
            )
            samples += google_health.map_data_points(body, health_user_id=conn.vendor_user)
            page = _next_page(body)
            if page is None:
                return samples
        if page is None:  # MAX_PAGES < 1: nothing was pulled, nothing is left over
            return samples
        # More pages than one pull may take: the rest goes back on the topic as a notification
        # of its own carrying the page token (through the deferred-pulls relay: durable, and
        # before this pull's samples are published, so a crash in between loses nothing).
        now = datetime.now(UTC)
        await self.deferrals.defer(_continuation(event, page), not_before=now, now=now)
        log.info("google_health_pages_continued", pages=MAX_PAGES)
        return samples

    async def _pull_garmin(self, event: VendorNotification) -> list[VendorSample]:
        if self.garmin is None:
            raise UnprocessableEventError("vendor_not_configured", "GARMIN_CLIENT_ID unset")
        body = await self.garmin.fetch_callback(event.detail["callback_url"])
        batch = garmin.map_push(event.kind, body if isinstance(body, dict) else {event.kind: body})
        return batch.samples


def interval_filter(data_type: str, start: str, end: str) -> str:
    """List filter for one notified interval of a kebab-case data type. UNCONFIRMED: the Google
    Health API's filter syntax is not in public material we could check; this follows Google's
    AIP-160 style, the field qualified by the snake_case data type (as in the v4 reference's
    `heart_rate.sample_time.physical_time >= "..."` example, see google_health_api.py)."""
    field = f"{data_type.replace('-', '_')}.sample_time.physical_time"
    return f'{field} >= "{start}" AND {field} < "{end}"'


def _continuation(event: VendorNotification, page_token: str) -> VendorNotification:
    """The same notification, resumed at `page_token` (a deterministic id of its own)."""
    detail = {**event.detail, "page_token": page_token}
    return event.model_copy(
        update={
            "notification_id": derive_id(event.notification_id, "page", page_token),
            "detail": detail,
        }
    )


def _next_page(body: Any) -> str | None:
    token = body.get("nextPageToken") if isinstance(body, dict) else None
    return token if isinstance(token, str) and token else None
