"""The on-call dashboard: its live stream over real HTTP, and the page in headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CollectorRegistry

from services.notifier.adapters.live_feed import LiveFeed
from services.notifier.dashboard import build_dashboard_router
from shared.auth import JwksCache, Principal, TokenValidator, require_scopes
from shared.http import ApiError, NotFoundError, build_app
from tests.browser import chromium_page
from tests.conftest import bearer, serving
from tests.fakes.idp import FakeIdP

UNRESOLVED = ("open", "acknowledged")


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- STAND-IN until the notifier's alert store lands ----------------------------------------
# Just enough of the HTTP contract (GET /v1/alerts, POST /v1/alerts/{id}/ack) to drive the page.
# Replace StandInAlerts + stand_in_router with the real notifier app once it exists.


class StandInAlerts:
    """STAND-IN alert store: a dict of AlertSummary JSON that publishes every change."""

    def __init__(self) -> None:
        self.alerts: dict[str, dict[str, Any]] = {}
        self.publish: Callable[[dict[str, Any]], None] = lambda _: None
        self.fail_reads = False

    def open(self, alert_id: str, *, patient_id: str, severity: str, age_s: float = 0) -> None:
        """Open a heart-rate alert `age_s` seconds ago and publish it."""
        opened = datetime.now(UTC) - timedelta(seconds=age_s)
        self.alerts[alert_id] = {
            "alert_id": alert_id,
            "patient_id": patient_id,
            "severity": severity,
            "status": "open",
            "title": "Heart rate",
            "value_text": "150 /min" if severity == "red" else "112 /min",
            "threshold": "> 120 /min" if severity == "red" else "> 100 /min",
            "opened_at": _iso(opened),
            "updated_at": _iso(opened),
            "level": 1 if severity == "red" else 0,
            "acknowledged_by": None,
            "acknowledged_via": None,
        }
        self.change(alert_id)

    def change(self, alert_id: str, **fields: Any) -> dict[str, Any]:
        """Update an alert, stamp updated_at, publish it (as the store does after a commit)."""
        alert = self.alerts[alert_id]
        alert.update(fields, updated_at=_iso(datetime.now(UTC)) if fields else alert["updated_at"])
        self.publish(alert)
        return dict(alert)

    async def snapshot(self) -> list[dict[str, Any]]:
        """The unresolved alerts (the LiveFeed snapshot provider)."""
        if self.fail_reads:
            raise ConnectionError("database down")
        return [dict(a) for a in self.alerts.values() if a["status"] in UNRESOLVED]


class _ConflictError(ApiError):
    status = 409
    code = "conflict"


def stand_in_router(store: StandInAlerts) -> APIRouter:
    """STAND-IN for the notifier's GET /v1/alerts and POST /v1/alerts/{id}/ack."""
    router = APIRouter()

    @router.get("/v1/alerts")
    async def list_alerts(
        _: Annotated[Principal, Depends(require_scopes("alerts:read"))],
        status: Literal["open", "all"] = "open",
    ) -> dict[str, Any]:
        alerts = await store.snapshot() if status == "open" else list(store.alerts.values())
        return {"alerts": alerts}

    @router.post("/v1/alerts/{alert_id}/ack")
    async def ack(
        alert_id: str, caller: Annotated[Principal, Depends(require_scopes("alerts:ack"))]
    ) -> dict[str, Any]:
        alert = store.alerts.get(alert_id)
        if alert is None:
            raise NotFoundError("no such alert")
        if alert["status"] not in UNRESOLVED:
            raise _ConflictError("the alert is already resolved")
        if alert["acknowledged_by"]:
            return dict(alert)
        return store.change(
            alert_id,
            status="acknowledged",
            acknowledged_by=caller.sub,
            acknowledged_via="dashboard",
        )

    return router


# ---- the app under test ----------------------------------------------------------------------


@dataclass
class Notifier:
    """The dashboard router (+ the stand-in) behind the shared middleware and real token checks."""

    store: StandInAlerts
    feed: LiveFeed
    app: FastAPI


@pytest.fixture
async def notifier(idp: FakeIdP) -> AsyncIterator[Notifier]:
    """A notifier app whose feed sends keepalives every 0.3 s."""
    async with httpx.AsyncClient(timeout=5) as jwks_http:
        store = StandInAlerts()
        feed = LiveFeed(store.snapshot, keepalive_s=0.3)
        store.publish = feed.publish
        app = build_app(
            title="Notifier",
            description="dashboard test",
            lifespan=None,
            registry=CollectorRegistry(),
            max_body_bytes=65_536,
        )
        jwks = JwksCache(url=idp.jwks_url, http=jwks_http, ttl_s=300, cooldown_s=30)
        app.state.token_validator = TokenValidator(jwks, issuer=idp.issuer, audience=idp.audience)
        app.include_router(build_dashboard_router(feed, retry_ms=1000))
        app.include_router(stand_in_router(store))
        yield Notifier(store, feed, app)


@contextlib.asynccontextmanager
async def served(notifier: Notifier) -> AsyncIterator[str]:
    """Serve on loopback; end open streams before the server stops (it waits for them)."""
    async with serving(notifier.app) as url:
        try:
            yield url
        finally:
            notifier.feed.close()


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Yield (event, data) per SSE message, ("comment", text) and ("retry", ms) as they come."""
    event, data = "", []
    async for line in response.aiter_lines():
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
        elif line.startswith(":"):
            yield "comment", value
        elif field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "retry":
            yield "retry", value


async def next_event(events: AsyncIterator[tuple[str, str]]) -> tuple[str, Any]:
    """The next event that is not a comment or retry hint, its data parsed as JSON."""
    async with asyncio.timeout(5):
        async for kind, data in events:
            if kind not in ("comment", "retry"):
                return kind, json.loads(data)
    raise AssertionError("the stream ended")


# ---- the stream over real HTTP ---------------------------------------------------------------


async def test_page_and_assets_are_served_without_a_build_step_under_a_strict_csp(
    notifier: Notifier,
) -> None:
    async with served(notifier) as url, httpx.AsyncClient(base_url=url) as client:
        page, script, style = [
            await client.get(p) for p in ("/", "/dashboard/app.js", "/dashboard/style.css")
        ]
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "form-action 'none'" in csp
    assert re.findall(r"<script\b[^>]*>", page.text) == [
        '<script type="module" src="/dashboard/app.js">'
    ]
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert linked == [
        "/dashboard/favicon.svg",
        "/dashboard/style.css",
        "/dashboard/app.js",
    ]  # nothing from a CDN


async def test_stream_sends_the_open_alerts_then_every_change(
    notifier: Notifier, idp: FakeIdP
) -> None:
    notifier.store.open("a-1", patient_id="pt-1", severity="yellow")
    headers = bearer(idp, "alerts:read")
    async with (
        served(notifier) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as client,
        client.stream("GET", "/v1/alerts/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response)
        assert await anext(events) == ("retry", "1000")
        kind, snapshot = await next_event(events)
        assert kind == "snapshot" and [a["alert_id"] for a in snapshot["alerts"]] == ["a-1"]
        notifier.store.open("a-2", patient_id="pt-2", severity="red")
        assert await next_event(events) == ("alert", notifier.store.alerts["a-2"])
        notifier.store.change("a-1", status="resolved")
        kind, changed = await next_event(events)
        assert (kind, changed["alert_id"], changed["status"]) == ("alert", "a-1", "resolved")


async def test_an_idle_stream_sends_keepalive_comments(notifier: Notifier, idp: FakeIdP) -> None:
    async with (
        served(notifier) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as client,
        client.stream("GET", "/v1/alerts/stream", headers=bearer(idp, "alerts:read")) as resp,
        asyncio.timeout(5),
    ):
        kinds = [kind async for kind, _ in _take(sse(resp), 4)]
    assert kinds == ["retry", "snapshot", "comment", "comment"]


async def _take(events: AsyncIterator[tuple[str, str]], n: int) -> AsyncIterator[tuple[str, str]]:
    for _ in range(n):
        yield await anext(events)


@pytest.mark.parametrize(
    ("scopes", "status", "code"),
    [(None, 401, "missing_token"), ("alerts:ack", 403, "insufficient_scope")],
)
async def test_stream_needs_a_token_with_alerts_read(
    notifier: Notifier, idp: FakeIdP, scopes: str | None, status: int, code: str
) -> None:
    headers = bearer(idp, scopes) if scopes else {}
    async with served(notifier) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v1/alerts/stream", headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert notifier.feed.subscriber_count == 0


async def test_stream_answers_503_when_the_open_alerts_cannot_be_read(
    notifier: Notifier, idp: FakeIdP
) -> None:
    notifier.store.fail_reads = True
    async with served(notifier) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v1/alerts/stream", headers=bearer(idp, "alerts:read"))
    assert (response.status_code, response.json()["error"]["code"]) == (503, "alerts_unavailable")
    assert response.headers["retry-after"] == "5"
    assert notifier.feed.subscriber_count == 0


async def test_a_client_that_goes_away_is_unsubscribed(notifier: Notifier, idp: FakeIdP) -> None:
    async with served(notifier) as url, httpx.AsyncClient(base_url=url, timeout=5) as client:
        async with client.stream(
            "GET", "/v1/alerts/stream", headers=bearer(idp, "alerts:read")
        ) as response:
            await next_event(sse(response))
            assert notifier.feed.subscriber_count == 1
        async with asyncio.timeout(5):
            while notifier.feed.subscriber_count:
                await asyncio.sleep(0.02)


async def test_a_slow_subscriber_is_dropped_and_never_blocks_the_publisher() -> None:
    async def no_alerts() -> list[dict[str, Any]]:
        return []

    feed = LiveFeed(no_alerts, queue_size=2, keepalive_s=60)
    async with feed.subscribe() as slow, feed.subscribe() as reader:
        assert (await anext(reader)).kind == "snapshot"
        for n in range(3):  # the slow one never reads: its queue overflows on the third
            feed.publish({"alert_id": f"a-{n}"})
            assert (await anext(reader)).data == {"alert_id": f"a-{n}"}
        assert feed.subscriber_count == 1
        assert [event.kind async for event in slow] == ["snapshot"]  # ends: reconnect, resnapshot
        feed.publish({"alert_id": "a-3"})
        assert (await anext(reader)).data == {"alert_id": "a-3"}


# ---- the page in headless Chromium -----------------------------------------------------------


def _token(idp: FakeIdP, scopes: str, *, issued_s_ago: int = 0) -> str:
    """A raw access token for agent-7, as the agent would paste it."""
    now = int(time.time()) - issued_s_ago
    return idp.mint(now=now, scope=scopes, tenant_id="tenant-a", sub="agent-7")


async def test_agent_acknowledges_a_live_red_alert_in_chromium(
    notifier: Notifier, idp: FakeIdP
) -> None:
    from playwright.async_api import expect

    store = notifier.store
    store.open("a-yellow", patient_id="pt-2", severity="yellow", age_s=30)
    async with served(notifier) as url, chromium_page() as browser:
        page = browser.page
        await page.goto(f"{url}/")
        await page.get_by_label("Access token").fill(_token(idp, "alerts:read alerts:ack"))
        await page.get_by_role("button", name="Connect").click()
        status = page.get_by_test_id("connection-status")
        await expect(status).to_have_text("Live")
        rows = page.get_by_test_id("alert-row")
        await expect(rows).to_have_count(1)

        store.open("a-red", patient_id="pt-1", severity="red", age_s=65)  # arrives live
        red = page.locator('[data-testid="alert-row"][data-alert-id="a-red"]')
        await expect(rows.first).to_have_attribute("data-alert-id", "a-red")  # red above yellow
        await expect(red.get_by_test_id("severity")).to_have_text("RED")
        await expect(red.locator(".badge")).to_have_css("background-color", "rgb(183, 28, 28)")
        await expect(red.get_by_test_id("level")).to_have_text("Level 1")
        age = red.get_by_test_id("age")
        await expect(age).to_have_text(re.compile(r"^1 min 0\d s$"))
        await expect(age).not_to_have_text(await age.text_content() or "")  # it ticks
        patient = page.locator('[data-testid="patient"][data-patient-id="pt-1"]')
        await expect(patient).to_have_attribute("data-severity", "red")

        await page.get_by_role(
            "button", name="Acknowledge red Heart rate alert for patient pt-1"
        ).click()
        await expect(red.get_by_test_id("acked-by")).to_have_text("agent-7")
        await expect(red.get_by_test_id("acked-via")).to_have_text("(via dashboard)")
        await expect(red).to_have_attribute("data-status", "acknowledged")
        await expect(red.get_by_test_id("ack-button")).to_have_count(0)
        assert store.alerts["a-red"]["acknowledged_by"] == "agent-7"
        # TODO(real notifier): also assert the fake Slack message was updated (chat.update).
        shot = await browser.screenshot("notifier-dashboard-acknowledged")

        # an acknowledgement made elsewhere (Slack) and a resolution arrive live as well
        store.change(
            "a-yellow", status="acknowledged", acknowledged_by="agent-9", acknowledged_via="slack"
        )
        yellow = page.locator('[data-testid="alert-row"][data-alert-id="a-yellow"]')
        await expect(yellow.get_by_test_id("acked-by")).to_have_text("agent-9")
        await expect(yellow.get_by_test_id("acked-via")).to_have_text("(via Slack)")
        store.change("a-red", status="resolved")
        await expect(red).to_have_count(0)
        await expect(patient).to_have_attribute("data-severity", "green")
        await expect(patient).to_contain_text("No open alerts")

        # the stream drops (slow reader, restart): the page reconnects and catches up by snapshot
        notifier.feed.close()
        await expect(status).to_contain_text("reconnecting")
        store.open("a-missed", patient_id="pt-3", severity="red")
        assert notifier.feed.subscriber_count == 0  # published while the page was away
        await expect(status).to_have_text("Live")
        await expect(
            page.locator('[data-testid="alert-row"][data-alert-id="a-missed"]')
        ).to_have_count(1)
        assert browser.errors == []  # no script error, no CSP violation
    assert shot.stat().st_size > 10_000


async def test_page_says_why_a_token_is_refused_and_asks_for_another(
    notifier: Notifier, idp: FakeIdP
) -> None:
    from playwright.async_api import expect

    refusals = [
        (_token(idp, "alerts:ack"), "lacks alerts:read", "Stopped: access denied"),
        (_token(idp, "alerts:read", issued_s_ago=3600), "has expired", "Stopped: token expired"),
    ]
    async with served(notifier) as url, chromium_page() as browser:
        page = browser.page
        await page.goto(f"{url}/")
        for token, message, status in refusals:
            await page.get_by_label("Access token").fill(token)
            await page.get_by_role("button", name="Connect").click()
            await expect(page.get_by_test_id("auth-error")).to_contain_text(message)
            await expect(page.get_by_test_id("connection-status")).to_have_text(status)
            await expect(page.get_by_label("Access token")).to_be_visible()  # asks for another
            assert token not in page.url
            assert await page.evaluate("() => localStorage.length + sessionStorage.length") == 0
