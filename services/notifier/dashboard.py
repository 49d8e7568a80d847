"""The on-call dashboard: a static page (no build step) and the live alert stream it reads."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from services.notifier.actions import ADMIN_SCOPE, may_see
from services.notifier.adapters.live_feed import FeedEvent, LiveFeed, Subscription
from shared.auth import Principal, require_scopes
from shared.http import ApiError

log = structlog.get_logger(__name__)

ASSETS_DIR = Path(__file__).with_name("dashboard")
RETRY_MS = 2000  # the client's first reconnect delay; it backs off from there
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",  # the token form is never submitted: no token in a URL
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",  # no HTML sinks: the page builds nodes only
        "trusted-types 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
_JS = "text/javascript; charset=utf-8"  # ES modules are refused under any other type
_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", _JS),
    "/dashboard/sse.js": ("sse.js", _JS),
    "/dashboard/view.js": ("view.js", _JS),
    "/dashboard/style.css": ("style.css", "text/css; charset=utf-8"),
    "/dashboard/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


class AlertsUnavailableError(ApiError):
    """The open alerts cannot be read (the snapshot failed); the client retries later."""

    status = 503
    code = "alerts_unavailable"


def build_dashboard_router(feed: LiveFeed, *, retry_ms: int = RETRY_MS) -> APIRouter:
    """Build GET / (+ its scripts, style and icon) and GET /v1/alerts/stream (scope alerts:read)."""
    router = APIRouter(tags=["dashboard"])
    for path, (name, media_type) in _ASSETS.items():
        router.add_api_route(
            path, _asset_endpoint(name, media_type), methods=["GET"], include_in_schema=False
        )

    @router.get(
        "/v1/alerts/stream",
        summary="Live alerts of the caller's tenant (Server-Sent Events): a snapshot, then every "
        "change",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        actor: Annotated[Principal, Depends(require_scopes("alerts:read"))],
    ) -> StreamingResponse:
        admin = ADMIN_SCOPE in actor.scopes
        audience = partial(may_see, tenant_id=actor.tenant_id, admin=admin)
        subscription = feed.subscribe(audience, tenant_id=actor.tenant_id, admin=admin)
        stack = contextlib.AsyncExitStack()
        try:
            events = await stack.enter_async_context(subscription)
        except Exception as exc:  # whatever the store raised: the client backs off and retries
            log.error("live_feed_snapshot_failed", error=type(exc).__name__)
            raise AlertsUnavailableError(
                "the open alerts cannot be read right now", headers={"Retry-After": "5"}
            ) from exc
        return StreamingResponse(
            _sse(events, stack, retry_ms=retry_ms),
            media_type="text/event-stream",
            headers=STREAM_HEADERS,
            background=BackgroundTask(stack.aclose),  # when the body never started
        )

    return router


def _asset_endpoint(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    """An endpoint answering one static file, read once (a missing file fails at startup)."""
    body = (ASSETS_DIR / name).read_bytes()

    async def asset() -> Response:
        return Response(body, media_type=media_type, headers=PAGE_HEADERS)

    asset.__name__ = f"dashboard_{name.replace('.', '_')}"
    return asset


async def _sse(
    events: Subscription, stack: contextlib.AsyncExitStack, *, retry_ms: int
) -> AsyncIterator[bytes]:
    """Encode a subscription as an event stream; unsubscribe when it ends or the client leaves."""
    try:
        yield f"retry: {retry_ms}\n\n".encode()
        async for event in events:
            yield encode_event(event)
    finally:
        await stack.aclose()


def encode_event(event: FeedEvent) -> bytes:
    """One SSE message: `event:` + one-line JSON `data:`, or a keepalive comment."""
    if event.kind == "keepalive":
        return b": keepalive\n\n"
    data = json.dumps(event.data, separators=(",", ":"), default=_json_default)
    return f"event: {event.kind}\ndata: {data}\n\n".encode()


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
