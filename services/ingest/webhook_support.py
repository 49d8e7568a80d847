"""What every vendor webhook route shares: raw body, errors, publishing and the outcome metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.ingest.connections import Connection, Vendor
from services.ingest.errors import (
    BrokerUnavailableError,
    ConsentUnknownError,
    DatabaseUnavailableError,
)
from services.ingest.handlers import audit_withheld
from services.ingest.vendor_handlers import VendorOutcome, accept_vendor_samples
from services.ingest.vendors.common import MalformedJsonError, PayloadError, VendorSample
from shared.audit import AuditActor
from shared.events import VendorNotification
from shared.http import ApiError, error_body
from shared.kafka import PublishFailedError
from shared.topics import VENDOR_NOTIFICATIONS

log = structlog.get_logger(__name__)


class ServiceUnavailableError(ApiError):
    """The broker is unavailable: nothing was accepted, the client or vendor must retry."""

    status = 503
    code = "broker_unavailable"


class ConsentLoadingError(ServiceUnavailableError):
    """The consent view is still loading: nothing can be checked, so nothing is accepted."""

    code = "consent_view_loading"


class InvalidPayloadError(ApiError):
    """The body does not have the vendor's documented shape."""

    status = 422
    code = "invalid_payload"


class MalformedJsonBodyError(ApiError):
    """The body is not JSON: the same code as /v1/readings gives (shared.http)."""

    status = 400
    code = "malformed_json"


class UnauthenticatedWebhookError(ApiError):
    status = 401
    code = "unauthenticated"


class WebhookNotConfiguredError(ApiError):
    status = 503
    code = "webhook_not_configured"


RETRY = {"Retry-After": "5"}


def is_database_unavailable(exc: BaseException) -> bool:
    """A connection-level database failure (not a bug in a query): retrying later can succeed."""
    if isinstance(exc, DatabaseUnavailableError | OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    # asyncpg raises a bare OSError (refused, unreachable) or TimeoutError when it cannot connect
    # and SQLAlchemy leaves it unwrapped: count it only when it came out of SQLAlchemy.
    return isinstance(exc, OSError) and _raised_through_sqlalchemy(exc)


def _raised_through_sqlalchemy(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith("sqlalchemy."):
            return True
        tb = tb.tb_next
    return False


def install_database_errors(app: FastAPI) -> None:
    """The one place database outages become 503 + Retry-After `database_unavailable` (webhooks,
    the Apple device-key check, /v1/connections): vendors retry, nothing accepted is lost. The
    pull consumer needs nothing more: any such error makes it retry the notification later."""

    async def on_database_error(_: Request, exc: Exception) -> JSONResponse:
        if not is_database_unavailable(exc):
            raise exc
        log.warning("database_unavailable", error=type(exc).__name__)
        return JSONResponse(
            error_body(
                "database_unavailable", "the connections database is unavailable, retry later"
            ),
            status_code=503,
            headers=RETRY,
        )

    for kind in (DatabaseUnavailableError, DBAPIError, OSError):
        app.add_exception_handler(kind, on_database_error)


def payload_api_error(exc: PayloadError) -> ApiError:
    """Map a mapper's PayloadError to the HTTP error: 400 for non-JSON, else 422 naming the field."""
    if isinstance(exc, MalformedJsonError):
        return MalformedJsonBodyError(f"request body {exc.message}")
    return InvalidPayloadError(
        f"{exc.field}: {exc.message}", details=[{"field": exc.field, "message": exc.message}]
    )


def payload_error(vendor: str, request: Request, exc: PayloadError) -> ApiError:
    """Count a refused webhook body and map it to its HTTP error."""
    request.app.state.metrics.webhook_rejected.labels(vendor, "invalid_payload").inc()
    return payload_api_error(exc)


def rejected(request: Request, vendor: str, reason: str) -> None:
    """Count a refused webhook call (never logs the body)."""
    request.app.state.metrics.webhook_rejected.labels(vendor, reason).inc()
    log.warning("webhook_rejected", vendor=vendor, reason=reason)


class VendorPipeline:
    """Vendor samples → connection → normalized readings → readings.v1, with metrics and audit;
    used by the webhook routes and by the pull consumer alike."""

    def __init__(
        self,
        *,
        settings: Any,
        connections: Any,
        publisher: Any,
        consent: Any,
        audit_sink: Any,
        metrics: Any,
    ) -> None:
        self._settings = settings
        self.connections = connections
        self._publisher = publisher
        self._consent = consent
        self._audit = audit_sink
        self._metrics = metrics

    async def publish(
        self,
        *,
        vendor: Vendor,
        samples: Sequence[VendorSample],
        connections: dict[str, Connection] | None = None,
    ) -> VendorOutcome:
        """Publish; raises ConsentUnknownError or BrokerUnavailableError when nothing could be."""
        if connections is None:
            users = {s.vendor_user for s in samples}
            connections = await self.connections.find_many(vendor, users)
        outcome = await accept_vendor_samples(
            samples,
            vendor=vendor.value,
            connections=connections,
            received_at=datetime.now(UTC),
            max_future_skew=timedelta(seconds=self._settings.ingest_max_future_skew_s),
            publisher=self._publisher,
            consent=self._consent,
            dead_letters=self._publisher,
        )
        self._count(vendor, outcome)
        if outcome.withheld_patients:
            await audit_withheld(
                outcome.withheld_patients,
                sink=self._audit,
                actor=AuditActor(type="vendor", id=vendor.value),
            )
        return outcome

    def _count(self, vendor: Vendor, outcome: VendorOutcome) -> None:
        counter = self._metrics.vendor_samples
        for name, value in (
            ("published", outcome.published),
            ("duplicate", outcome.duplicates),
            ("withheld", outcome.withheld),
            ("unknown_user", outcome.unknown_user_samples),
            ("inactive_connection", outcome.inactive_connection_samples),
            ("invalid", outcome.invalid_samples),
        ):
            if value:
                counter.labels(vendor.value, name).inc(value)
        self._metrics.accepted.inc(outcome.published)
        if outcome.withheld:
            self._metrics.withheld.inc(outcome.withheld)


@asynccontextmanager
async def publish_deadline(request: Request) -> AsyncIterator[None]:
    """Bound a webhook's broker work by INGEST_WEBHOOK_PUBLISH_TIMEOUT_S, counted from its first
    publish (one budget for all of a request's publishes), so the vendor gets a 503 it retries
    before its own deadline (Fitbit: 5 s) instead of timing out."""
    deadline = getattr(request.state, "publish_deadline", None)
    if deadline is None:
        budget = request.app.state.settings.ingest_webhook_publish_timeout_s
        deadline = request.state.publish_deadline = asyncio.get_running_loop().time() + budget
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError as exc:
        log.warning("webhook_publish_timed_out")
        raise ServiceUnavailableError(
            "the event broker did not acknowledge in time, retry later", headers=RETRY
        ) from exc


async def publish_samples(
    request: Request,
    *,
    vendor: Vendor,
    samples: Sequence[VendorSample],
    connections: dict[str, Connection] | None = None,
) -> VendorOutcome:
    """Publish from a webhook route; 503 + Retry-After when nothing could be accepted in time."""
    try:
        async with publish_deadline(request):
            outcome: VendorOutcome = await request.app.state.pipeline.publish(
                vendor=vendor, samples=samples, connections=connections
            )
            return outcome
    except ConsentUnknownError as exc:
        raise ConsentLoadingError(
            "consent state is still loading, retry later", headers=RETRY
        ) from exc
    except BrokerUnavailableError as exc:
        raise ServiceUnavailableError(
            "the event broker is unavailable, retry later", headers=RETRY
        ) from exc


def outcome_body(outcome: VendorOutcome) -> dict[str, Any]:
    """JSON body of a 2xx for clients that read it (Apple, FHIR)."""
    return {
        "accepted": outcome.published,
        "duplicates": outcome.duplicates,
        "withheld_no_consent": outcome.withheld,
        "dead_lettered": outcome.unknown_user_samples
        + outcome.inactive_connection_samples
        + outcome.invalid_samples,
    }


async def queue_pulls(request: Request, notifications: Sequence[VendorNotification]) -> None:
    """Durably queue pull work (acks=all) before the webhook answers 2xx (503 if not in time)."""
    if not notifications:
        return
    try:
        async with publish_deadline(request):
            await request.app.state.runtime.publisher.publish_many(
                VENDOR_NOTIFICATIONS, notifications
            )
    except PublishFailedError as exc:
        raise ServiceUnavailableError(
            "the event broker is unavailable, retry later", headers=RETRY
        ) from exc
