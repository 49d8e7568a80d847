"""Vendor webhook routes: Fitbit, Google Health, Garmin, Apple Health. Each verifies the caller on
the raw bytes first, then maps, then answers 2xx only after the broker acknowledged."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from services.ingest.connections import ConnectionStatus, Vendor
from services.ingest.vendors import apple_health, fitbit, garmin, google_health
from services.ingest.vendors.common import PayloadError
from services.ingest.vendors.wire import decode
from services.ingest.webhook_support import (
    UnauthenticatedWebhookError,
    WebhookNotConfiguredError,
    outcome_body,
    payload_error,
    publish_samples,
    queue_pulls,
    rejected,
)
from shared.events import VendorNotification
from shared.http import ApiError, NotFoundError, require_json
from shared.ids import derive_id

log = structlog.get_logger(__name__)


class InvalidSignatureError(ApiError):
    """Fitbit's documented answer to a signature mismatch is 404."""

    status = 404
    code = "invalid_signature"


class ForbiddenWebhookError(ApiError):
    status = 403
    code = "forbidden"


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _notification(
    vendor: Vendor, user: str, kind: str, detail: dict[str, str]
) -> VendorNotification:
    parts = [vendor.value, user, kind, *(f"{k}={v}" for k, v in sorted(detail.items()))]
    return VendorNotification(
        notification_id=derive_id("vendor-notification", *parts),
        vendor=vendor.value,
        vendor_user=user,
        kind=kind,
        detail=detail,
        received_at=datetime.now(UTC),
    )


def build_webhook_router() -> APIRouter:
    """Routes the vendors call."""
    r = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
    _fitbit(r)
    _google_health(r)
    _garmin(r)
    _apple(r)
    return r


def _fitbit(r: APIRouter) -> None:
    @r.get("/fitbit", status_code=204, summary="Fitbit subscriber verification (204 / 404)")
    async def verify(
        request: Request, verify: Annotated[str, Query(max_length=256)] = ""
    ) -> Response:
        code = _secret(request.app.state.settings.fitbit_verification_code)
        if code is None or not _same(verify, code):
            rejected(request, "fitbit", "wrong_verification_code")
            raise NotFoundError("unknown verification code")
        return Response(status_code=204)

    @r.post(
        "/fitbit",
        status_code=204,
        summary="Fitbit subscription notifications (X-Fitbit-Signature); pulls happen afterwards",
    )
    async def notify(
        request: Request,
        signature: Annotated[str | None, Header(alias="X-Fitbit-Signature")] = None,
    ) -> Response:
        settings = request.app.state.settings
        secret = _secret(settings.fitbit_client_secret)
        if secret is None:
            raise WebhookNotConfiguredError("FITBIT_CLIENT_SECRET is not set")
        await require_json(request)
        raw = await request.body()
        if not fitbit.verify_signature(raw, signature, secret):
            rejected(request, "fitbit", "invalid_signature")
            raise InvalidSignatureError("X-Fitbit-Signature does not match the body")
        try:
            notices = fitbit.parse_notifications(raw)
        except PayloadError as exc:
            raise payload_error("fitbit", request, exc) from exc
        pulls = []
        for n in notices:
            if n.revokes_access:
                await request.app.state.connections.set_status(
                    Vendor.FITBIT, n.owner_id, ConnectionStatus.REVOKED, "userRevokedAccess"
                )
                continue
            detail = {"date": n.date.isoformat(), "collection": n.collection_type}
            pulls.append(_notification(Vendor.FITBIT, n.owner_id, n.collection_type, detail))
        await queue_pulls(request, pulls)
        return Response(status_code=204)


def _google_health(r: APIRouter) -> None:
    @r.post(
        "/google-health",
        status_code=204,
        summary="Google Health API notifications and verification handshake (201)",
        responses={201: {"description": "Verification handshake answered"}},
    )
    async def notify(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        settings = request.app.state.settings
        secret = _secret(settings.google_health_webhook_secret)
        if secret is None:
            raise WebhookNotConfiguredError("GOOGLE_HEALTH_WEBHOOK_SECRET is not set")
        await require_json(request)
        raw = await request.body()
        if authorization is None:
            rejected(request, "google_health", "missing_authorization")
            raise UnauthenticatedWebhookError("Authorization header missing")
        if not _same(authorization.removeprefix("Bearer ").strip(), secret):
            rejected(request, "google_health", "wrong_authorization")
            raise ForbiddenWebhookError("Authorization does not carry the webhook secret")
        _check_google_signature(request, raw)
        try:
            body = decode(raw)
            if google_health.is_verification(body):
                return Response(status_code=201)
            changes = google_health.parse_notifications(raw)
        except PayloadError as exc:
            raise payload_error("google_health", request, exc) from exc
        pulls = [
            _notification(
                Vendor.GOOGLE_HEALTH,
                p.health_user_id,
                p.data_type,
                {"start": p.start.isoformat(), "end": p.end.isoformat()},
            )
            for change in changes
            for p in google_health.pulls_for(change)
        ]
        await queue_pulls(request, pulls)
        return Response(status_code=204)


def _check_google_signature(request: Request, raw: bytes) -> None:
    """Check the ECDSA P-256 signature when a public key is configured (header name unconfirmed)."""
    pem = request.app.state.google_health_public_key
    if pem is None:
        return
    header = next(
        (request.headers.get(h) for h in google_health.SIGNATURE_HEADERS if h in request.headers),
        None,
    )
    if not google_health.verify_signature(raw, header, pem):
        rejected(request, "google_health", "invalid_signature")
        raise UnauthenticatedWebhookError("the webhook signature does not match the body")


def _garmin(r: APIRouter) -> None:
    @r.post(
        "/garmin/{summary_type}",
        summary="Garmin Health API push (and ping) for one summary type; garmin-client-id checked",
    )
    async def push(
        summary_type: str,
        request: Request,
        client_id: Annotated[str | None, Header(alias="garmin-client-id")] = None,
    ) -> JSONResponse:
        expected = _secret(request.app.state.settings.garmin_client_id)
        if expected is None:
            raise WebhookNotConfiguredError("GARMIN_CLIENT_ID is not set")
        if not _same(client_id, expected):
            rejected(request, "garmin", "wrong_client_id")
            raise UnauthenticatedWebhookError("garmin-client-id header missing or wrong")
        await require_json(request)
        try:
            batch = garmin.map_push(
                summary_type,
                decode(await request.body()),
                pull_origin=request.app.state.settings.garmin_api_base_url.rstrip("/"),
            )
        except PayloadError as exc:
            raise payload_error("garmin", request, exc) from exc
        if batch.ignored:  # summary types we do not carry (or do not know yet): say so
            log.info("garmin_summaries_ignored", types=batch.ignored)
        await _garmin_notices(request, batch.notices)
        pulls = [
            _notification(
                Vendor.GARMIN, p.user_id, p.summary_type, {"callback_url": p.callback_url}
            )
            for p in batch.pulls
        ]
        await queue_pulls(request, pulls)
        outcome = await publish_samples(request, vendor=Vendor.GARMIN, samples=batch.samples)
        body = {**outcome_body(outcome), "pulls_queued": len(pulls), "ignored": batch.ignored}
        return JSONResponse(body, status_code=200)


async def _garmin_notices(request: Request, notices: list[garmin.GarminNotice]) -> None:
    store = request.app.state.connections
    for notice in notices:
        if isinstance(notice, garmin.GarminDeregistration):
            await store.set_status(
                Vendor.GARMIN, notice.user_id, ConnectionStatus.REVOKED, "deregistration"
            )
        elif "HEALTH_EXPORT" not in notice.permissions:
            await store.set_status(
                Vendor.GARMIN, notice.user_id, ConnectionStatus.REVOKED, "health_export_withdrawn"
            )
        elif not await store.reactivate(
            Vendor.GARMIN,
            notice.user_id,
            revoked_for="health_export_withdrawn",
            reason="permissions_changed",
        ):  # active already, or inactive for another cause a permissions change does not undo
            log.info("garmin_permissions_change_not_reactivating")


def _apple(r: APIRouter) -> None:
    @r.post(
        "/apple-health",
        status_code=202,
        summary="Apple Health from the phone (Health Auto Export or HealthKit samples)",
    )
    async def post(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        if not authorization or not authorization.startswith("Bearer "):
            rejected(request, "apple_health", "missing_device_key")
            raise UnauthenticatedWebhookError("Authorization: Bearer <device key> required")
        conn = await request.app.state.connections.authenticate_device(
            authorization.removeprefix("Bearer ").strip()
        )
        if conn is None:
            rejected(request, "apple_health", "unknown_device_key")
            raise UnauthenticatedWebhookError("unknown or revoked device key")
        await require_json(request)
        try:
            result = apple_health.map_apple(
                decode(await request.body()), vendor_user=conn.vendor_user
            )
        except PayloadError as exc:
            raise payload_error("apple_health", request, exc) from exc
        outcome = await publish_samples(
            request,
            vendor=Vendor.APPLE_HEALTH,
            samples=result.samples,
            connections={conn.vendor_user: conn},
        )
        return JSONResponse({**outcome_body(outcome), "skipped": result.skipped}, status_code=202)
