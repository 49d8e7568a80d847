"""Fixtures shared by every test: embedded broker, fake Slack, in-process services on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from deploy.embedded_broker import free_port, start_tansu, stop_tansu
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import FakeTwilio

# Short group timeouts: the embedded broker holds a join for about half the session timeout.
FAST_GROUPS = {
    "kafka_session_timeout_ms": 2000,
    "kafka_heartbeat_interval_ms": 300,
    "kafka_fetch_max_wait_ms": 20,
}


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


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    """Fake Twilio REST API on loopback."""
    fake = FakeTwilio().start()
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


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    """Fake identity provider (JWKS on loopback) minting RFC 9068 access tokens."""
    fake = FakeIdP(audience="vitals-alerting").start()
    try:
        yield fake
    finally:
        fake.stop()


def auth_settings(idp: FakeIdP) -> dict[str, object]:
    """Settings that make a service trust the fake IdP."""
    return {
        "auth_jwks_url": idp.jwks_url,
        "auth_issuer": idp.issuer,
        "auth_audience": idp.audience,
    }


def bearer(
    idp: FakeIdP, scopes: str, *, tenant: str = "tenant-a", sub: str = "user-1"
) -> dict[str, str]:
    """Authorization header with a fresh token for the scopes."""
    token = idp.mint(now=int(time.time()), scope=scopes, tenant_id=tenant, sub=sub)
    return {"Authorization": f"Bearer {token}"}


TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Consent database settings: a SQLite file, or a fresh schema on the local PostgreSQL."""
    if request.param == "sqlite":
        yield {"database_url": f"sqlite:///{tmp_path}/consent.db"}
        return
    import asyncpg

    try:
        conn = await asyncpg.connect(TEST_POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {TEST_POSTGRES_URL}: {exc}")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield {"database_url": TEST_POSTGRES_URL, "database_schema": schema}
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
