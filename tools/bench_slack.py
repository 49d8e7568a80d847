"""The bench's fake Slack in a process of its own: `python -m tools.bench_slack PORT`.

In a thread of the bench process it shared one GIL with the posting clients' event loop, and each
hand-over between the two could wait the 5 ms switch interval: the fake then took only about
100 calls/s and its own delays counted as pipeline latency. Here uvicorn runs it on the main
thread of its own process. The bench reads the accepted calls over HTTP (`GET /bench/calls?since=
N`); their `received_at` is this process's time.perf_counter(), CLOCK_MONOTONIC on Linux, the same
clock as the bench's perf_counter().
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tests.fakes.slack import FakeSlack, SlackCall

SLACK_TOKEN = "xoxb-bench"
POLL_S = 0.05  # how often wait_for() asks the fake for new calls


def build_app(fake: FakeSlack) -> Starlette:
    """The fake's Web API routes plus /readyz and /bench/calls."""

    async def calls(request: Request) -> JSONResponse:
        since = int(request.query_params.get("since", "0"))
        with fake._cond:
            new = fake.calls[since:]
        return JSONResponse(
            {"calls": [{"received_at": c.received_at, "body": c.body, "ts": c.ts} for c in new]}
        )

    async def ready(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/api/chat.postMessage", fake._post, methods=["POST"]),
            Route("/api/chat.update", fake._update, methods=["POST"]),
            Route("/readyz", ready),
            Route("/bench/calls", calls),
        ]
    )


@dataclass
class RemoteSlack:
    """The bench's view of the fake Slack process: its accepted chat.postMessage calls."""

    url: str
    pid: int
    _calls: list[SlackCall] = field(default_factory=list)

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
            time.sleep(POLL_S)  # the fake is another process: nothing to await but its answers
        return True


def main(argv: list[str]) -> None:
    """Serve the fake on 127.0.0.1:PORT until terminated."""
    app: Any = build_app(FakeSlack(token=SLACK_TOKEN))
    gc.freeze()  # its receipt stamps are the measurement: no full collection of the startup heap
    uvicorn.run(app, host="127.0.0.1", port=int(argv[0]), log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
