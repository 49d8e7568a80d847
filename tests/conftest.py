"""Fixtures shared by every test: embedded broker, fake Slack, in-process services on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from deploy.embedded_broker import free_port, start_tansu, stop_tansu
from tests.fakes.slack import FakeSlack

# Short group timeouts: the embedded broker holds a join for about half the session timeout.
FAST_GROUPS = {"kafka_session_timeout_ms": 2000, "kafka_heartbeat_interval_ms": 300}


@pytest.fixture
def broker() -> Iterator[str]:
    """A fresh embedded broker (memory engine) per test: no state leaks between tests."""
    port = free_port()
    proc = start_tansu(port, quiet=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_tansu(proc)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """Fake Slack Web API on loopback."""
    fake = FakeSlack().start()
    try:
        yield fake
    finally:
        fake.stop()


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve an app (with its lifespan) over real HTTP on a free loopback port; yield its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def wait_ready(*urls: str, timeout: float = 20.0) -> None:
    """Wait until every service's /readyz answers 200."""
    async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
        for url in urls:
            while (await client.get(f"{url}/readyz")).status_code != 200:
                await asyncio.sleep(0.05)
