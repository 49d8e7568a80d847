"""The bench's fake Slack process: long polls that wake on the next accepted call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.slack import FakeSlack
from tools.bench_slack import SLACK_TOKEN, RemoteSlack, build_app

AUTH = {"Authorization": f"Bearer {SLACK_TOKEN}"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(FakeSlack(token=SLACK_TOKEN)))
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        yield client


async def post(client: httpx.AsyncClient, text: str, thread_ts: str | None = None) -> str:
    body = {"channel": "#care-alerts", "text": text}
    if thread_ts is not None:
        body["thread_ts"] = thread_ts
    reply = await client.post("/api/chat.postMessage", json=body, headers=AUTH)
    return str(reply.json()["ts"])


async def update(client: httpx.AsyncClient, ts: str, text: str) -> None:
    body = {"channel": "C0CAREALERT", "ts": ts, "text": text}
    reply = await client.post("/api/chat.update", json=body, headers=AUTH)
    assert reply.json()["ok"]


async def test_a_long_poll_parks_until_the_fake_accepts_a_call(
    client: httpx.AsyncClient,
) -> None:
    polling = asyncio.create_task(client.get("/bench/updates", params={"since": 0, "wait_s": 5}))
    ts = await post(client, "RED alert opened, patient pt-1")
    await asyncio.sleep(0.05)
    assert not polling.done()  # a post is no update: still waiting
    await update(client, ts, "RED alert cancelled: consent withdrawn")
    calls = (await asyncio.wait_for(polling, 1.0)).json()["calls"]
    assert [c["ts"] for c in calls] == [ts]


async def test_main_post_wakes_on_the_post_naming_the_patient(client: httpx.AsyncClient) -> None:
    slack = RemoteSlack("http://fake", pid=0)
    started = time.perf_counter()
    waiting = asyncio.create_task(slack.main_post(client, "pt-1", timeout_s=5.0))
    await asyncio.sleep(0.05)  # the long poll is parked on the fake by now
    parent = await post(client, "RED alert opened: heart rate, patient pt-10")
    await post(client, "reply in pt-10's thread, naming pt-1", thread_ts=parent)
    expected = await post(client, "RED alert opened: heart rate, patient pt-1")
    found = await waiting
    assert found is not None and found.ts == expected
    assert time.perf_counter() - started < 2.0  # woken by the post, not by the timeout


async def test_update_of_matches_the_message_ts_and_the_state(client: httpx.AsyncClient) -> None:
    slack = RemoteSlack("http://fake", pid=0)
    other = await post(client, "RED alert opened, patient pt-2")
    ts = await post(client, "RED alert opened, patient pt-1")
    posted = await slack.main_post(client, "pt-1", timeout_s=1.0)
    assert posted is not None
    waiting = asyncio.create_task(slack.update_of(client, posted, "cancelled", timeout_s=5.0))
    await asyncio.sleep(0.05)
    await update(client, other, "RED alert cancelled: consent withdrawn")
    await update(client, ts, "RED alert, escalated to level 2")
    await update(client, ts, "RED alert cancelled: consent withdrawn")
    found = await waiting
    assert found is not None and found.ts == ts
    assert found.body["text"] == "RED alert cancelled: consent withdrawn"
    assert found.received_at >= posted.received_at


async def test_update_of_gives_up_at_the_deadline(client: httpx.AsyncClient) -> None:
    slack = RemoteSlack("http://fake", pid=0)
    await post(client, "RED alert opened, patient pt-1")
    posted = await slack.main_post(client, "pt-1", timeout_s=1.0)
    assert posted is not None
    assert await slack.update_of(client, posted, "cancelled", timeout_s=0.2) is None
