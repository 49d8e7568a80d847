"""The throughput ceiling: a bare ASGI app under uvicorn, started like our services are.

POST /v1/readings reads the body and answers 202 with a small JSON body, doing nothing else;
GET /readyz answers 200. `python -m tools.bench_ceiling PORT`. The uvicorn settings mirror
shared/serve.py, so wrk against it measures what uvicorn itself can do on this machine.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
ACCEPTED = b'{"accepted":1}'


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """ASGI entry point."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    more = True
    while more:  # drain the request body, as a real endpoint must
        message: Message = await receive()
        more = message.get("more_body", False)
    if scope["method"] == "POST" and scope["path"] == "/v1/readings":
        await _respond(send, 202, ACCEPTED)
    elif scope["method"] == "GET" and scope["path"] == "/readyz":
        await _respond(send, 200, b'{"status":"ready"}')
    else:
        await _respond(send, 404, b'{"error":"not_found"}')


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    """Serve on 127.0.0.1:PORT with the same uvicorn settings as shared.serve."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
