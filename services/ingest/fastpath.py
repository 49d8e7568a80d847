"""POST /v1/readings served without FastAPI's router: the ingest API's busiest call.

The route stays declared in services.ingest.api (OpenAPI documents it, and it answers whenever
the fast path is not mounted); this ASGI middleware answers that one method and path itself, with
the same per-request work the shared middlewares do (request id, body cap, refusal audit, latency
histogram and log line) and the same endpoint function, so the answers are the same.
"""

from __future__ import annotations

import time

import structlog
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from services.ingest.api import readings_endpoint
from shared.http import (
    ApiError,
    BodyTooLargeError,
    CappedReceive,
    api_error_response,
    audit_refusal,
    body_too_large,
    declared_too_large,
    request_id_of,
    validation_response,
)

PATH = "/v1/readings"


class ReadingsFastPath:
    """Answer POST /v1/readings directly; pass every other request to the app."""

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
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        scope["route"] = self.route
        status = 500  # an unexpected error propagates to the app's 500 handler
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                response = await self._respond(scope, receive)
                response.raw_headers.append((b"x-request-id", request_id.encode()))
                status = response.status_code
                await response(scope, receive, send)
                await audit_refusal(scope, status, service=self.service)
            finally:
                scope["app"].state.http_metrics.completed(
                    method="POST", route=PATH, status=status, started=started
                )

    async def _respond(self, scope: Scope, receive: Receive) -> JSONResponse:
        """The endpoint's answer, with errors mapped as the app's exception handlers map them."""
        cap = self.max_body_bytes
        if declared_too_large(scope["headers"], cap):
            return body_too_large(cap)
        try:
            return await readings_endpoint(Request(scope, CappedReceive(receive, cap)))
        except BodyTooLargeError:
            return body_too_large(cap)
        except ApiError as exc:
            return api_error_response(exc)
        except RequestValidationError as exc:
            return validation_response(exc)
