"""An httpx transport that sends over aiohttp: the channel senders keep httpx's API.

httpx's own connection pool (httpcore on anyio) cost about 3 ms of CPU per request here (it checks
every pooled connection's socket on each request), and the notifier makes one request per page:
measured against the fake Slack on loopback, 3,000 posts 32 at a time took 10.5 s of CPU with
httpx's pool, 2.8 s with this transport under the same httpx client, and the fake answered 734
instead of 246 calls/s. Timeouts and failures keep httpx's meaning: the senders still catch
httpx.TimeoutException / httpx.TransportError (both httpx.HTTPError).
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (at most `limit` connections), opened on the first request."""

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request as httpx built it; answer with the raw (undecoded) body."""
        if self._session is None:
            # auto_decompress off: httpx decodes the body by its Content-Encoding, as usual.
            connector = aiohttp.TCPConnector(limit=self._limit)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        timeout = request.extensions.get("timeout", {})
        try:
            async with self._session.request(
                request.method,
                str(request.url),
                headers=list(request.headers.multi_items()),
                data=await request.aread(),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            ) as reply:
                content = await reply.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(type(exc).__name__, request=request) from exc
        except aiohttp.ClientConnectionError as exc:
            raise httpx.ConnectError(type(exc).__name__, request=request) from exc
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            raise httpx.NetworkError(type(exc).__name__, request=request) from exc
        return httpx.Response(
            reply.status,
            headers=[(k, v) for k, v in reply.raw_headers],
            content=content,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
