"""The connections database unreachable (PostgreSQL behind a proxy that is then shut): vendor
webhooks, the Apple device-key check and /v1/connections answer 503 + Retry-After with
`database_unavailable`, never a 500, so vendors retry and nothing accepted is lost."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import TEST_POSTGRES_URL, bearer
from tests.fakes.idp import FakeIdP
from tests.integration.ingest_harness import (
    START,
    Ingest,
    garmin_dailies,
    garmin_push,
    ingest_service,
)

USER = "garmin-db-down-user"


class Proxy:
    """A TCP forwarder to PostgreSQL; `shut()` closes it and every open connection."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def shut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()


@pytest.fixture
async def down(broker: str, idp: FakeIdP, tmp_path: Path) -> AsyncIterator[tuple[Ingest, Proxy]]:
    import asyncpg

    target = urlsplit(TEST_POSTGRES_URL)
    try:
        admin = await asyncpg.connect(TEST_POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {TEST_POSTGRES_URL}: {exc}")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = TEST_POSTGRES_URL.replace(
        target.netloc, f"{target.netloc.split('@')[0]}@127.0.0.1:{proxy.port}"
    )
    try:
        async with ingest_service(
            broker, idp, tmp_path, ingest_database_url=url, ingest_database_schema=schema
        ) as service:
            yield service, proxy
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "database_unavailable"


async def test_database_down_gives_503_with_retry_after_never_500(
    down: tuple[Ingest, Proxy],
) -> None:
    ingest, proxy = down
    await ingest.connect({"vendor": "garmin", "vendor_user_id": USER, "patient_id": "pt-db-1"})
    apple = await ingest.connect({"vendor": "apple_health", "patient_id": "pt-db-1"})
    ok = await garmin_push(
        ingest, garmin_dailies(USER, "sd-db-0", start=START, heart_rate={"0": 61})
    )
    assert ok.status_code == 200, ok.text
    await proxy.shut()

    push = await garmin_push(
        ingest, garmin_dailies(USER, "sd-db-1", start=START, heart_rate={"0": 62})
    )
    assert_database_unavailable(push)
    key = apple["device_key"]
    apple_post = await ingest.post(
        "/v1/webhooks/apple-health", content=b"[]", headers={"Authorization": f"Bearer {key}"}
    )
    assert_database_unavailable(apple_post)
    async with httpx.AsyncClient(base_url=ingest.url, headers=bearer(ingest.idp, "admin")) as c:
        assert_database_unavailable(await c.get("/v1/connections"))
        created = await c.post(
            "/v1/connections",
            json={"vendor": "garmin", "vendor_user_id": "other", "patient_id": "pt-db-2"},
        )
        assert_database_unavailable(created)
