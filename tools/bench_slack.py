"""The bench's fake Slack in a process of its own: `python -m tools.bench_slack PORT`.

In a thread of the bench process it shared one GIL with the posting clients' event loop, and each
hand-over between the two could wait the 5 ms switch interval: the fake then took only about
100 calls/s and its own delays counted as pipeline latency. Here uvicorn runs it on the main
thread of its own process. The bench reads the accepted calls over HTTP (`GET /bench/calls?since=
N` for chat.postMessage, thread replies included, `GET /bench/updates?since=N` for chat.update);
their `received_at` is this process's time.perf_counter(), CLOCK_MONOTONIC on Linux, the same
clock as the bench's perf_counter(). With `wait_s=S` either endpoint is a long poll: when nothing
new is there it answers once the fake accepts its next call (or after S seconds, empty).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.slack import FakeSlack, SlackCall

SLACK_TOKEN = "xoxb-bench"
POLL_S = 0.05  # how often wait_for() asks the fake for new calls
LONG_POLL_MAX_S = 30.0  # longest a /bench/* request waits for a new call


class Arrivals:
    """Wakes the long polls when the fake accepts a call (all on uvicorn's one event loop)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every waiter; later waiters wait for the next call."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        """Return at the next accepted call or after timeout_s."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)


def build_app(fake: FakeSlack) -> Starlette:
    """The fake's Web API routes plus /readyz, /bench/calls and /bench/updates."""
    arrivals = Arrivals()

    def accepting(method: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        async def route(request: Request) -> Response:
            response = await method(request)
            arrivals.notify()  # also on a rejection: waking a poll for nothing is harmless
            return response

        return route

    def listing(recorded: list[SlackCall]) -> Callable[..., Any]:
        async def route(request: Request) -> JSONResponse:
            since = int(request.query_params.get("since", "0"))
            wait_s = min(float(request.query_params.get("wait_s", "0")), LONG_POLL_MAX_S)
            if wait_s > 0 and len(recorded) <= since:
                await arrivals.wait(wait_s)
            with fake._cond:
                new = recorded[since:]
            return JSONResponse(
                {"calls": [{"received_at": c.received_at, "body": c.body, "ts": c.ts} for c in new]}
            )

        return route

    async def ready(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/api/chat.postMessage", accepting(fake._post), methods=["POST"]),
            Route("/api/chat.update", accepting(fake._update), methods=["POST"]),
            Route("/readyz", ready),
            Route("/bench/calls", listing(fake.calls)),
            Route("/bench/updates", listing(fake.updates)),
        ]
    )


@dataclass
class RemoteSlack:
    """The bench's view of the fake Slack process: its accepted posts and chat.update calls."""

    url: str
    pid: int
    _calls: list[SlackCall] = field(default_factory=list)
    _updates: list[SlackCall] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """Value for SLACK_API_BASE_URL."""
        return f"{self.url}/api"

    @property
    def calls(self) -> list[SlackCall]:
        """Every accepted call so far (fetched anew on each read)."""
        with httpx.Client(timeout=10.0) as client:
            reply = client.get(f"{self.url}/bench/calls", params={"since": len(self._calls)})
            reply.raise_for_status()
        self._calls += [SlackCall(**c) for c in reply.json()["calls"]]
        return self._calls

    def wait_for(self, predicate: Callable[[list[SlackCall]], bool], timeout: float) -> bool:
        """Ask the fake every POLL_S until predicate(calls) holds or the timeout passes."""
        deadline = time.monotonic() + timeout
        while not predicate(self.calls):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)  # a steady pace: phase A's figures were measured with it
        return True

    async def next_call(
        self,
        client: httpx.AsyncClient,
        predicate: Callable[[SlackCall], bool],
        *,
        updates: bool,
        timeout_s: float,
    ) -> SlackCall | None:
        """The first accepted post (or chat.update) that satisfies predicate, earlier ones
        included; long-polls the fake for new ones until timeout_s passes (then None)."""
        recorded, path = (self._updates, "updates") if updates else (self._calls, "calls")
        deadline = time.perf_counter() + timeout_s
        checked = 0
        while True:
            found = next((c for c in recorded[checked:] if predicate(c)), None)
            remaining = deadline - time.perf_counter()
            if found is not None or remaining <= 0:
                return found
            checked = len(recorded)
            reply = await client.get(
                f"{self.url}/bench/{path}",
                params={"since": checked, "wait_s": f"{remaining:.3f}"},
                timeout=remaining + 5.0,
            )
            reply.raise_for_status()
            recorded += [SlackCall(**c) for c in reply.json()["calls"]]

    async def main_post(
        self, client: httpx.AsyncClient, patient_id: str, timeout_s: float
    ) -> SlackCall | None:
        """The first chat.postMessage naming the patient in its text that is no thread reply."""
        names = re.compile(re.escape(patient_id) + r"(?!\d)")  # -rv-1 is not -rv-10

        def matches(call: SlackCall) -> bool:
            return "thread_ts" not in call.body and bool(names.search(call.body.get("text", "")))

        return await self.next_call(client, matches, updates=False, timeout_s=timeout_s)

    async def update_of(
        self, client: httpx.AsyncClient, post: SlackCall, showing: str, timeout_s: float
    ) -> SlackCall | None:
        """The first chat.update of post's message (same ts) whose text contains `showing`.

        The ts alone identifies the message: the fake numbers its messages and accepts an update
        only in the channel the message was posted to.
        """

        def matches(call: SlackCall) -> bool:
            return call.ts == post.ts and showing in call.body.get("text", "")

        return await self.next_call(client, matches, updates=True, timeout_s=timeout_s)


def main(argv: list[str]) -> None:
    """Serve the fake on 127.0.0.1:PORT until terminated."""
    app: Any = build_app(FakeSlack(token=SLACK_TOKEN))
    gc.freeze()  # its receipt stamps are the measurement: no full collection of the startup heap
    uvicorn.run(app, host="127.0.0.1", port=int(argv[0]), log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
