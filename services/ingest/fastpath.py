"""POST /v1/readings, the ingest API's busiest call, answered in front of the app's middleware.

The fast path answers only a request it can answer completely: an `application/json` body within
the cap that parses, no query string, and exactly one `Authorization: Bearer` header whose token
the validator already verified (TokenValidator.cached) and which holds readings:write. That is
every request of a client reusing its token. Anything else (a token not seen yet, a refusal, a
malformed body, an oversized one) it hands, body replayed, to the full app, whose route
(services.ingest.api) checks, refuses, audits and answers as every other route does. Both paths
publish through the same `submit`, so an accepted request gets the same answer on either.

What the shared middlewares do per request, the fast path does itself: request id (echoed as
X-Request-ID and bound to the log context), the latency histogram and log line, refusal audit,
and the plain 500 of Starlette's ServerErrorMiddleware for an unexpected error. Anything added
later inside the app's stack (a middleware, an exception handler) does not see its answers.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from pydantic import ValidationError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest.api import ReadingsIn, samples_of, submit
from shared.auth import Principal
from shared.http import (
    REQUEST_STARTED,
    ApiError,
    audit_refusal,
    error_body,
    length_over,
    request_id_of,
)

PATH = "/v1/readings"
SCOPE = "readings:write"
_JSON = b"application/json"
_PLAIN_500 = b"Internal Server Error"


class ReadingsFastPath:
    """Answer a well-formed, already-authorized POST /v1/readings; hand everything else on."""

    def __init__(
        self, app: ASGIApp, *, route: BaseRoute, max_body_bytes: int, service: str
    ) -> None:
        self.app = app
        self.route = route  # scope["route"], as the router would set it (audit and metrics read it)
        self.max_body_bytes = max_body_bytes
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or _route_path(scope) != PATH
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        caller = _authorized_caller(scope["headers"], state, self.max_body_bytes)
        if caller is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        messages, body = await _read_body(receive, self.max_body_bytes)
        parsed = None
        if body:  # None: over the cap, or the client left; the app answers (413) or sees it
            try:
                parsed = ReadingsIn.model_validate_json(body)
            except ValidationError:
                pass
        if parsed is None:  # the app's route names the problem (400 / 413 / 422)
            scope[REQUEST_STARTED] = started  # its latency counts the body's upload too
            await self.app(scope, _replay(messages, receive), send)
            return
        request_id = request_id_of(scope["headers"])
        scope["route"] = self.route
        status = 500  # until submit answers
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        answered = False
        try:
            extra: dict[str, str] = {}
            try:
                status, payload = await submit(
                    state, samples_of(parsed), caller, field_prefix="readings"
                )
            except ApiError as exc:  # 503: consent still loading, broker unavailable
                status, extra = exc.status, exc.headers
                payload = error_body(exc.code, exc.message, exc.details)
            answered = True
            await _send_json(send, status, payload, request_id, extra)
            if 400 <= status < 500:  # 422: a sample the catalog refuses
                await audit_refusal(scope, status, service=self.service)
        except Exception:
            # What the app's ServerErrorMiddleware does: a plain 500 unless an answer already
            # started, then up to the server, which logs the traceback.
            if not answered:
                await _send_plain_500(send)
            raise
        finally:
            state.http_metrics.completed(method="POST", route=PATH, status=status, started=started)
            structlog.contextvars.reset_contextvars(**tokens)


def _route_path(scope: Scope) -> str:
    """The path the router matches (Starlette's get_route_path): without the root_path, when
    the server or a mount put one in front of it."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def _authorized_caller(
    headers: list[tuple[bytes, bytes]], state: Any, max_body_bytes: int
) -> Principal | None:
    """The caller, when the headers are the plain case the fast path answers; else None."""
    ctype = auth = length = None
    for name, value in headers:
        if name == b"content-type":
            if ctype is not None:
                return None
            ctype = value
        elif name == b"authorization":
            if auth is not None:
                return None
            auth = value
        elif name == b"content-length":
            length = value
    if ctype is None or auth is None or auth[:7] != b"Bearer ":
        return None
    if ctype != _JSON and ctype.split(b";", 1)[0].strip().lower() != _JSON:
        return None
    if length is not None and (not length.isdigit() or length_over(length, max_body_bytes)):
        return None
    validator = getattr(state, "token_validator", None)
    if validator is None:
        return None
    caller: Principal | None = validator.cached(auth[7:].decode("latin-1"))
    return caller if caller is not None and SCOPE in caller.scopes else None


async def _read_body(receive: Receive, cap: int) -> tuple[list[Message], bytes | None]:
    """The messages received and the whole body; None once it is over `cap` or the client left."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > cap:
            return messages, None
        if not message.get("more_body", False):
            break
    if len(messages) == 1:
        return messages, messages[0].get("body", b"")
    return messages, b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives back the messages already read, then continues with `receive`."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _send_json(
    send: Send, status: int, payload: dict[str, Any], request_id: str, extra: dict[str, str]
) -> None:
    """Send `payload` as Starlette's JSONResponse would render it."""
    body = json.dumps(
        payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", _JSON),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()),
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_plain_500(send: Send) -> None:
    """Starlette's PlainTextResponse 500, as its ServerErrorMiddleware sends it."""
    headers = [
        (b"content-length", str(len(_PLAIN_500)).encode()),
        (b"content-type", b"text/plain; charset=utf-8"),
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": _PLAIN_500})
