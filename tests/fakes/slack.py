"""A local Slack Web API fake that speaks chat.postMessage's and chat.update's real wire format.

What it checks, as Slack does: a bearer token (`not_authed` without one, `invalid_auth` for a wrong
one; both HTTP 200 with ok=false), a JSON body (`invalid_json`), a channel (`channel_not_found`),
text or blocks (`no_text`), blocks as typed objects (`invalid_blocks`). chat.update needs the
channel *id* (a `#name` is `channel_not_found`, as in Slack) and the `ts` of a message of that
channel (`message_not_found`). A thread reply's `thread_ts` must be a known message of the channel
(`thread_not_found`: stricter than Slack, whose chat.postMessage docs do not say what an unknown
thread_ts does). It can answer HTTP 429 with Retry-After for the next N calls. Successful answers
carry `ok`, the channel id and the message `ts`. `signed_interaction` builds what Slack POSTs to an
interactivity URL. Docs: https://api.slack.com/methods/chat.postMessage,
https://api.slack.com/methods/chat.update, https://api.slack.com/web#responses,
https://api.slack.com/authentication/verifying-requests-from-slack
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

KNOWN_CHANNELS_DEFAULT = frozenset({"#care-alerts", "C0CAREALERT"})
CHANNEL_IDS_DEFAULT = {"#care-alerts": "C0CAREALERT"}


@dataclass
class SlackCall:
    """One chat.postMessage or chat.update call the fake accepted."""

    received_at: float  # time.perf_counter() on arrival
    body: dict[str, Any]
    ts: str


@dataclass
class FakeSlack:
    """Run with start(); calls land in `calls`; wait_for() blocks on a condition, not a sleep.

    `calls`: accepted chat.postMessage calls (thread replies included); `updates`: accepted
    chat.update calls; `messages`: ts -> current body (channel as id), edits applied.
    """

    token: str = "xoxb-test-token"
    channels: frozenset[str] = KNOWN_CHANNELS_DEFAULT
    channel_ids: dict[str, str] = field(default_factory=lambda: dict(CHANNEL_IDS_DEFAULT))
    calls: list[SlackCall] = field(default_factory=list)
    updates: list[SlackCall] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        routes = [
            Route("/api/chat.postMessage", self._post, methods=["POST"]),
            Route("/api/chat.update", self._update, methods=["POST"]),
        ]
        self._server = ThreadedServer(Starlette(routes=routes), name="Slack", port=self.port)
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

    def channel_id(self, channel: str) -> str:
        """The id Slack answers for a channel given by name or id."""
        if channel in self.channel_ids:
            return self.channel_ids[channel]
        if channel.startswith("#"):
            return "C" + hashlib.sha1(channel.encode()).hexdigest()[:10].upper()
        return channel

    def _fail(self, error: str, status: int = 200, **headers: str) -> JSONResponse:
        with self._cond:
            self.rejected.append({"error": error, "status": status, "at": time.perf_counter()})
        return JSONResponse({"ok": False, "error": error}, status_code=status, headers=headers)

    async def _parse(self, request: Request) -> dict[str, Any] | JSONResponse:
        """Rate limit, token and JSON checks shared by both methods."""
        with self._cond:
            limited = self.rate_limit_next > 0
            self.rate_limit_next -= int(limited)
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
        return body if isinstance(body, dict) else self._fail("invalid_json")

    @staticmethod
    def _content_error(body: dict[str, Any]) -> str | None:
        blocks = body.get("blocks")
        if not body.get("text") and not blocks and not body.get("attachments"):
            return "no_text"
        if blocks is not None and (
            not isinstance(blocks, list)
            or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
        ):
            return "invalid_blocks"
        return None

    def _known(self, ts: object, channel_id: str) -> bool:
        message = self.messages.get(ts) if isinstance(ts, str) else None
        return message is not None and message["channel"] == channel_id

    def _record(self, body: dict[str, Any], channel_id: str, arrived: float) -> str | None:
        """Store an accepted post and return its ts; None when its thread_ts is unknown."""
        with self._cond:
            if "thread_ts" in body and not self._known(body["thread_ts"], channel_id):
                return None
            self._seq += 1
            ts = f"{int(time.time())}.{self._seq:06d}"
            self.messages[ts] = {**body, "channel": channel_id}
            self.calls.append(SlackCall(received_at=arrived, body=body, ts=ts))
            self._cond.notify_all()
            return ts

    async def _post(self, request: Request) -> JSONResponse:
        arrived = time.perf_counter()
        body = await self._parse(request)
        if isinstance(body, JSONResponse):
            return body
        if body.get("channel") not in self.channels:
            return self._fail("channel_not_found")
        if error := self._content_error(body):
            return self._fail(error)
        channel_id = self.channel_id(body["channel"])
        ts = self._record(body, channel_id, arrived)
        if ts is None:
            return self._fail("thread_not_found")
        message = {"type": "message", "text": body.get("text", ""), "ts": ts}
        if "thread_ts" in body:
            message["thread_ts"] = body["thread_ts"]
        return JSONResponse({"ok": True, "channel": channel_id, "ts": ts, "message": message})

    async def _update(self, request: Request) -> JSONResponse:
        arrived = time.perf_counter()
        body = await self._parse(request)
        if isinstance(body, JSONResponse):
            return body
        channel = body.get("channel")
        ids = {self.channel_id(c) for c in self.channels}
        if not isinstance(channel, str) or channel.startswith("#") or channel not in ids:
            return self._fail("channel_not_found")
        if not body.get("ts"):
            return self._fail("invalid_arguments")
        if error := self._content_error(body):
            return self._fail(error)
        with self._cond:
            found = self._known(body["ts"], channel)
            if found:
                self.messages[body["ts"]] |= {k: v for k, v in body.items() if k != "ts"}
                self.updates.append(SlackCall(received_at=arrived, body=body, ts=body["ts"]))
                self._cond.notify_all()
        if not found:
            return self._fail("message_not_found")
        text = self.messages[body["ts"]].get("text", "")
        return JSONResponse(
            {
                "ok": True,
                "channel": channel,
                "ts": body["ts"],
                "text": text,
                "message": {"text": text},
            }
        )


def block_actions_payload(
    *, action_id: str, value: str, message_ts: str, channel_id: str = "C0CAREALERT"
) -> dict[str, Any]:
    """A minimal block_actions payload as Slack sends when a user clicks a button."""
    return {
        "type": "block_actions",
        "user": {"id": "U0NURSE01", "username": "nurse", "team_id": "T0CARE"},
        "api_app_id": "A0NOTIFIER",
        "team": {"id": "T0CARE", "domain": "care"},
        "channel": {"id": channel_id, "name": "care-alerts"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id},
        "message": {"type": "message", "ts": message_ts},
        "trigger_id": "1337.42.abcdef",
        "response_url": "https://hooks.slack.com/actions/T0CARE/1/abc",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "alert_actions",
                "value": value,
                "action_ts": f"{int(time.time())}.000100",
            }
        ],
    }


def signed_interaction(
    payload: dict[str, Any], signing_secret: str, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """The form body `payload=<json>` Slack POSTs for an interaction, and its signing headers."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
    }
