"""A local Slack Web API fake that speaks chat.postMessage's real wire format.

What it checks, as Slack does: a bearer token (`not_authed` without one, `invalid_auth` for a wrong
one; both HTTP 200 with ok=false), a JSON body (`invalid_json`), a channel (`channel_not_found`),
text or blocks (`no_text`), blocks as typed objects (`invalid_blocks`). It can answer HTTP 429 with
Retry-After for the next N calls. Successful answers carry `ok`, `channel` and a unique `ts`.
Docs: https://api.slack.com/methods/chat.postMessage, https://api.slack.com/web#responses
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

KNOWN_CHANNELS_DEFAULT = frozenset({"#care-alerts", "C0CAREALERT"})


@dataclass
class SlackCall:
    """One chat.postMessage call the fake accepted."""

    received_at: float  # time.perf_counter() on arrival
    body: dict[str, Any]
    ts: str


@dataclass
class FakeSlack:
    """Run with start(); calls land in `calls`; wait_for() blocks on a condition, not a sleep."""

    token: str = "xoxb-test-token"
    channels: frozenset[str] = KNOWN_CHANNELS_DEFAULT
    calls: list[SlackCall] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rate_limit_next: int = 0
    retry_after_s: int = 1
    port: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadedServer | None = None
    _seq: int = 0

    @property
    def base_url(self) -> str:
        """Value for SLACK_API_BASE_URL."""
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> FakeSlack:
        """Serve on a free loopback port in a background thread."""
        self._server = ThreadedServer(
            Starlette(routes=[Route("/api/chat.postMessage", self._post, methods=["POST"])]),
            name="Slack",
            port=self.port,
        )
        self.port = self._server.port
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()

    def wait_for(self, predicate: Callable[[list[SlackCall]], bool], timeout: float) -> bool:
        """Block until predicate(calls) holds or the timeout passes; return whether it held."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.calls), timeout=timeout)

    def calls_mentioning(self, text: str) -> list[SlackCall]:
        """Calls whose body mentions `text` anywhere (e.g. a patient id)."""
        with self._cond:
            return [c for c in self.calls if text in json.dumps(c.body)]

    def _fail(self, error: str, status: int = 200, **headers: str) -> JSONResponse:
        with self._cond:
            self.rejected.append({"error": error, "status": status, "at": time.perf_counter()})
        return JSONResponse({"ok": False, "error": error}, status_code=status, headers=headers)

    async def _post(self, request: Request) -> JSONResponse:
        arrived = time.perf_counter()
        with self._cond:
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                limited = True
            else:
                limited = False
        if limited:
            return self._fail("ratelimited", 429, **{"Retry-After": str(self.retry_after_s)})
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return self._fail("not_authed")
        if auth.removeprefix("Bearer ") != self.token:
            return self._fail("invalid_auth")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._fail("invalid_arguments")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._fail("invalid_json")
        if not isinstance(body, dict):
            return self._fail("invalid_json")
        if body.get("channel") not in self.channels:
            return self._fail("channel_not_found")
        blocks = body.get("blocks")
        if not body.get("text") and not blocks:
            return self._fail("no_text")
        if blocks is not None and (
            not isinstance(blocks, list)
            or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
        ):
            return self._fail("invalid_blocks")
        with self._cond:
            self._seq += 1
            ts = f"{int(time.time())}.{self._seq:06d}"
            self.calls.append(SlackCall(received_at=arrived, body=body, ts=ts))
            self._cond.notify_all()
        return JSONResponse(
            {
                "ok": True,
                "channel": "C0CAREALERT",
                "ts": ts,
                "message": {"type": "message", "text": body.get("text", ""), "ts": ts},
            }
        )
