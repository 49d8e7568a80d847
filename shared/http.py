"""HTTP pieces every service shares: error body, request context, body cap, ops endpoints."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.audit import AuditActor, AuditRecorded

log = structlog.get_logger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# Pseudonymous patient ids in paths and queries: strict ASCII, so fullwidth digits, zero-width or
# bidi characters never reach a lookup (the same alphabet as shared.events.PatientId).
PATIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
PatientPath = Annotated[str, Path(pattern=PATIENT_ID_PATTERN, description="Pseudonymous id")]


class ApiError(Exception):
    """An error with an HTTP status, a stable machine code and a message for the caller."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.details = details


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Build the one error body shape all services return."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return body


def field_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `readings[0].value` (dropping the 'body' prefix)."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """The 400 (malformed JSON) or 422 (naming each field) answer to a validation error."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        msg = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error")
        return JSONResponse(
            error_body("malformed_json", f"request body is not valid JSON: {msg}"), status_code=400
        )
    details = [{"field": field_path(tuple(e["loc"])), "message": e["msg"]} for e in errors]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return JSONResponse(error_body("validation_error", summary, details), status_code=422)


def api_error_response(exc: ApiError) -> JSONResponse:
    """The answer to an ApiError: its status, headers and the shared error body."""
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the shared body shape; unexpected errors are logged, never leaked."""

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc)

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return api_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


class RequestMetrics:
    """The http_request_seconds histogram, with its label children cached (labels() locks)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}

    def completed(self, *, method: str, route: str, status: int, started: float) -> None:
        """Time the request and log its one line (never for the ops endpoints' polling)."""
        elapsed = time.perf_counter() - started
        labels = (method, route, status)
        child = self._children.get(labels)
        if child is None:
            child = self.latency.labels(method, route, str(status))
            if len(self._children) < 1024:  # the method is the client's: bound it
                self._children[labels] = child
        child.observe(elapsed)
        if route not in ("/healthz", "/readyz", "/metrics"):
            log.info(
                "http_request_completed",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )


# A layer in front of RequestContextMiddleware that already read the body before handing the
# request on (services.ingest.fastpath) puts its start time here, so the latency counts it.
REQUEST_STARTED = "shared.request_started"


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is well-formed, else a fresh one."""
    for name, value in reversed(headers):  # the last one, as dict(headers) would pick
        if name == b"x-request-id":
            incoming = value.decode(errors="replace")
            return incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Bind a request id, log one line per request with the route template, time it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: CollectorRegistry | None = None,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.app = app
        if metrics is None:
            metrics = RequestMetrics(registry or CollectorRegistry())
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        status = 500
        started = scope.get(REQUEST_STARTED, None) or time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.completed(
                    method=scope["method"], route=route, status=status, started=started
                )


class RefusalAuditMiddleware:
    """Audit every refused request (4xx) the route itself did not audit: bad input, oversize,
    unknown route. Best effort: a failing audit sink never changes the answer."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_wrapper)
        await audit_refusal(scope, status, service=self.service)


async def audit_refusal(scope: Scope, status: int, *, service: str) -> None:
    """Record a 4xx answer on the audit sink unless the route already audited it."""
    if not 400 <= status < 500 or scope.get("state", {}).get("refusal_audited"):
        return
    sink = getattr(scope["app"].state, "audit_sink", None) if "app" in scope else None
    if sink is None:
        return
    route = str(getattr(scope.get("route"), "path", "unmatched"))
    record = AuditRecorded(
        event_id=uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        service=service,
        actor=AuditActor(type="anonymous", id="unauthenticated"),
        action="request.refused",
        outcome="denied",
        reason=f"http_{status}",
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
        details={"method": scope["method"], "route": route},
    )
    try:
        await sink.record(record)
    except Exception as err:
        log.error("refusal_audit_failed", error=type(err).__name__, status=status)


class BodySizeLimitMiddleware:
    """Reject bodies over a cap with 413 before the application reads them into memory."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_too_large(scope["headers"], self.max_bytes):
            await self._reject(send)
            return
        limited = CappedReceive(receive, self.max_bytes)
        try:
            await self.app(scope, limited, send)
        except BodyTooLargeError:
            if limited.exceeded:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await body_too_large(self.max_bytes)({"type": "http"}, _empty_receive, send)


def body_too_large(max_bytes: int) -> JSONResponse:
    """The 413 answer to a body over the cap."""
    return JSONResponse(
        error_body("body_too_large", f"request body exceeds {max_bytes} bytes"), status_code=413
    )


class BodyTooLargeError(Exception):
    """Raised by CappedReceive when the body read so far is over the cap."""


def declared_too_large(headers: list[tuple[bytes, bytes]], max_bytes: int) -> bool:
    """Whether the request's Content-Length already says the body is over the cap."""
    declared = dict(headers).get(b"content-length")
    return declared is not None and length_over(declared, max_bytes)


def length_over(declared: bytes, max_bytes: int) -> bool:
    """Whether a Content-Length value of digits says more than max_bytes (False when it is not
    digits: the server refuses those). Leading zeros are allowed, so its length alone says
    nothing, and int() of over 4,300 digits would raise."""
    if not declared.isdigit():
        return False
    significant = declared.lstrip(b"0")
    return len(significant) > 19 or int(significant or b"0") > max_bytes


class CappedReceive:
    """An ASGI receive that raises BodyTooLargeError once more than max_bytes of body arrived."""

    def __init__(self, receive: Receive, max_bytes: int) -> None:
        self._receive = receive
        self._max_bytes = max_bytes
        self._received = 0
        self.exceeded = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._max_bytes:
                self.exceeded = True
                raise BodyTooLargeError
        return message


async def _empty_receive() -> Message:
    return {"type": "http.disconnect"}


async def require_json(request: Request) -> None:
    """Dependency: refuse anything but application/json with 415."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise UnsupportedMediaTypeError(
            f"content-type must be application/json, got {ctype or 'none'!r}"
        )


class UnsupportedMediaTypeError(ApiError):
    """Wrong Content-Type."""

    status = 415
    code = "unsupported_media_type"


def ops_router(
    *, checks: Callable[[], Mapping[str, bool]], registry: CollectorRegistry
) -> APIRouter:
    """Build /healthz (process alive), /readyz (dependencies connected) and /metrics."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process serves HTTP")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: 200 only when every Kafka client is connected")
    async def readyz() -> JSONResponse:
        results = dict(checks())
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def build_app(
    *, title: str, description: str, lifespan: Any, registry: CollectorRegistry, max_body_bytes: int
) -> FastAPI:
    """Create a FastAPI app with the shared middleware and error handlers installed."""
    app = FastAPI(
        title=title,
        description=description,
        lifespan=lifespan,
        version="0.1.0",
        # FastAPI's native OpenTelemetry is unused here (no provider is configured) but its
        # on-by-default check read os.environ and the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.state.http_metrics = RequestMetrics(registry)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(RefusalAuditMiddleware, service=title.lower())
    app.add_middleware(RequestContextMiddleware, metrics=app.state.http_metrics)
    return app


def wrap_outermost(app: FastAPI, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Put an ASGI layer in front of the app's whole middleware stack (error handling, body
    limit, our middlewares, router), inside only FastAPI's own __call__ (which sets
    scope["app"]). For a hot route that does the shared middlewares' per-request work itself."""
    if app.middleware_stack is not None:
        raise RuntimeError("wrap_outermost after the app served its first request")
    build = app.build_middleware_stack

    def build_wrapped() -> ASGIApp:
        return wrap(build())

    app.build_middleware_stack = build_wrapped  # type: ignore[method-assign]


class NotFoundError(ApiError):
    """Not found, or not the caller's (another tenant's patient gets the same answer)."""

    status = 404
    code = "not_found"


class DuplicateKeyError(ApiError):
    """A JSON object repeats a key; which value counts would be ambiguous."""

    code = "duplicate_json_key"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise DuplicateKeyError(f"duplicate JSON key(s): {', '.join(dupes)}")
    return dict(pairs)


async def reject_duplicate_keys(request: Request) -> None:
    """Dependency: refuse bodies whose JSON objects repeat a key (FastAPI keeps the last one)."""
    body = await request.body()
    if not body:
        return
    try:
        json.loads(body, object_pairs_hook=_no_duplicates)
    except DuplicateKeyError:
        raise
    except (ValueError, RecursionError):
        return  # FastAPI's own parsing reports malformed JSON with its 400/422
