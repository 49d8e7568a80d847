"""The on-call dashboard: its live stream over real HTTP, and the page in headless Chromium.

The stream's plumbing (assets, auth, keepalives, back-pressure) runs on the dashboard router over a
stub snapshot; what the stream and the page show runs on the real notifier (embedded broker,
SQLite, fake Slack, fake Twilio, fake IdP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.notifier.adapters.live_feed import LiveFeed, TenantedSummary
from services.notifier.dashboard import build_dashboard_router
from shared.auth import JwksCache, TokenValidator
from shared.events import AlertKind, Purpose, Severity
from shared.http import build_app
from tests.browser import chromium_page
from tests.conftest import bearer, serving
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack, SlackCall, block_actions_payload, signed_interaction
from tests.fakes.twilio import FakeTwilio
from tests.services.notifier.harness import (
    SIGNING_SECRET,
    Service,
    api,
    eventually,
    eventually_async,
    publish_alerts,
    publish_consent,
    routing_file,
    running,
    settings,
    sqlite_db,
)
from tests.services.notifier.support import alert_event, consent_event, feed

# ---- the stream's plumbing, on a stub snapshot ------------------------------------------------


@dataclass
class StubSnapshot:
    """The open alerts the stream starts with (the LiveFeed's snapshot provider port)."""

    alerts: list[TenantedSummary] = field(default_factory=list)
    fail_reads: bool = False

    async def __call__(self, tenant_id: str | None, admin: bool) -> list[TenantedSummary]:
        if self.fail_reads:
            raise ConnectionError("database down")
        return list(self.alerts)


@dataclass
class Plumbing:
    """The dashboard router behind the shared middleware and real token checks."""

    snapshot: StubSnapshot
    feed: LiveFeed
    app: FastAPI


@pytest.fixture
async def plumbing(idp: FakeIdP) -> AsyncIterator[Plumbing]:
    """A dashboard-only app whose feed sends keepalives every 0.3 s."""
    async with httpx.AsyncClient(timeout=5) as jwks_http:
        snapshot = StubSnapshot()
        live = LiveFeed(snapshot, keepalive_s=0.3)
        app = build_app(
            title="Notifier",
            description="dashboard test",
            lifespan=None,
            registry=CollectorRegistry(),
            max_body_bytes=65_536,
        )
        jwks = JwksCache(url=idp.jwks_url, http=jwks_http, ttl_s=300, cooldown_s=30)
        app.state.token_validator = TokenValidator(jwks, issuer=idp.issuer, audience=idp.audience)
        app.include_router(build_dashboard_router(live, retry_ms=1000))
        yield Plumbing(snapshot, live, app)


@contextlib.asynccontextmanager
async def served(target: Plumbing) -> AsyncIterator[str]:
    """Serve on loopback; end open streams before the server stops (it waits for them)."""
    async with serving(target.app) as url:
        try:
            yield url
        finally:
            target.feed.close()


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """Yield (event, data) per SSE message, ("comment", text) and ("retry", ms) as they come."""
    event, data = "", list[str]()
    async for line in response.aiter_lines():
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", list[str]()
        elif line.startswith(":"):
            yield "comment", value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "retry":
            yield "retry", value


async def next_event(events: AsyncIterator[tuple[str, str]], timeout: float = 5) -> tuple[str, Any]:
    """The next event that is not a comment or retry hint, its data parsed as JSON."""
    async with asyncio.timeout(timeout):
        async for kind, data in events:
            if kind not in ("comment", "retry"):
                return kind, json.loads(data)
    raise AssertionError("the stream ended")


async def test_page_and_assets_are_served_without_a_build_step_under_a_strict_csp(
    plumbing: Plumbing,
) -> None:
    async with served(plumbing) as url, httpx.AsyncClient(base_url=url) as client:
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


async def test_an_idle_stream_sends_keepalive_comments(plumbing: Plumbing, idp: FakeIdP) -> None:
    async with (
        served(plumbing) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as client,
        client.stream("GET", "/v1/alerts/stream", headers=bearer(idp, "alerts:read")) as resp,
        asyncio.timeout(5),
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
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
    plumbing: Plumbing, idp: FakeIdP, scopes: str | None, status: int, code: str
) -> None:
    headers = bearer(idp, scopes) if scopes else {}
    async with served(plumbing) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v1/alerts/stream", headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert plumbing.feed.subscriber_count == 0


async def test_stream_answers_503_when_the_open_alerts_cannot_be_read(
    plumbing: Plumbing, idp: FakeIdP
) -> None:
    plumbing.snapshot.fail_reads = True
    async with served(plumbing) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v1/alerts/stream", headers=bearer(idp, "alerts:read"))
    assert (response.status_code, response.json()["error"]["code"]) == (503, "alerts_unavailable")
    assert response.headers["retry-after"] == "5"
    assert plumbing.feed.subscriber_count == 0


async def test_a_client_that_goes_away_is_unsubscribed(plumbing: Plumbing, idp: FakeIdP) -> None:
    async with served(plumbing) as url, httpx.AsyncClient(base_url=url, timeout=5) as client:
        async with client.stream(
            "GET", "/v1/alerts/stream", headers=bearer(idp, "alerts:read")
        ) as response:
            await next_event(sse(response))
            assert plumbing.feed.subscriber_count == 1
        async with asyncio.timeout(5):
            while plumbing.feed.subscriber_count:
                await asyncio.sleep(0.02)


def _everyone(_: str | None) -> bool:
    return True


async def test_a_slow_subscriber_is_dropped_and_never_blocks_the_publisher() -> None:
    live = LiveFeed(StubSnapshot(), queue_size=2, keepalive_s=60)
    async with live.subscribe(_everyone) as slow, live.subscribe(_everyone) as reader:
        assert (await anext(reader)).kind == "snapshot"
        for n in range(3):  # the slow one never reads: its queue overflows on the third
            live.publish({"alert_id": f"a-{n}"}, tenant_id="tenant-a")
            assert (await anext(reader)).data == {"alert_id": f"a-{n}"}
        assert live.subscriber_count == 1
        assert [event.kind async for event in slow] == ["snapshot"]  # ends: reconnect, resnapshot
        live.publish({"alert_id": "a-3"}, tenant_id="tenant-a")
        assert (await anext(reader)).data == {"alert_id": "a-3"}


async def test_a_subscriber_gets_only_the_tenants_it_may_see() -> None:
    snapshot = StubSnapshot([("tenant-a", {"alert_id": "a-1"}), ("tenant-b", {"alert_id": "b-1"})])
    live = LiveFeed(snapshot, keepalive_s=60)
    async with live.subscribe(lambda tenant: tenant == "tenant-a") as reader:
        first = await anext(reader)
        assert first.data == {"alerts": [{"alert_id": "a-1"}]}
        live.publish({"alert_id": "b-2"}, tenant_id="tenant-b")
        live.publish({"alert_id": "u-1"}, tenant_id=None)
        live.publish({"alert_id": "a-2"}, tenant_id="tenant-a")
        assert (await anext(reader)).data == {"alert_id": "a-2"}  # b-2 and u-1 never queued


def _token(idp: FakeIdP, scopes: str, *, sub: str = "ana", issued_s_ago: int = 0) -> str:
    """A raw access token of tenant-a, as an agent would paste it."""
    now = int(time.time()) - issued_s_ago
    return idp.mint(now=now, scope=scopes, tenant_id="tenant-a", sub=sub)


async def test_page_says_why_a_token_is_refused_and_asks_for_another(
    plumbing: Plumbing, idp: FakeIdP
) -> None:
    from playwright.async_api import expect

    refusals = [
        (_token(idp, "alerts:ack"), "lacks alerts:read", "Stopped: access denied"),
        (_token(idp, "alerts:read", issued_s_ago=3600), "has expired", "Stopped: token expired"),
    ]
    async with served(plumbing) as url, chromium_page() as browser:
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


# ---- the real notifier -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def notifier(
    broker: str, idp: FakeIdP, tmp_path: Path, slack: FakeSlack, twilio: FakeTwilio
) -> AsyncIterator[Service]:
    """The notifier app on a fresh SQLite database; open streams end before the server stops."""
    config = settings(
        broker=broker,
        idp=idp,
        db=sqlite_db(tmp_path),
        slack=slack,
        twilio=twilio,
        routing=routing_file(tmp_path),
    )
    async with running(config, slack, twilio) as service:
        try:
            yield service
        finally:
            service.app.state.feed.close()


async def patients_of(service: Service, tenants: dict[str, str]) -> None:
    """Record consent for patients (patient -> tenant) on consent.v1; wait until it is seen."""
    events = [
        consent_event(p, Purpose.MONITORING, True).model_copy(
            update={"tenant_id": t, "event_id": f"c-{p}"}
        )
        for p, t in tenants.items()
    ]
    await publish_consent(service.broker, *events)
    consent = service.notifier.consent
    await eventually(lambda: all(consent.tenant_of(p) == t for p, t in tenants.items()))


def main_post(slack: FakeSlack, alert_id: str) -> SlackCall | None:
    """The alert's main Slack message (not a thread reply), once posted."""
    return next(
        (
            c
            for c in list(slack.calls)
            if "thread_ts" not in c.body and f"`{alert_id}`" in json.dumps(c.body)
        ),
        None,
    )


async def ids_listed(service: Service, headers: dict[str, str]) -> set[str]:
    """The alert ids GET /v1/alerts?status=all answers."""
    response = await api(service, "GET", "/v1/alerts?status=all", headers)
    assert response.status_code == 200, response.text
    return {a["alert_id"] for a in response.json()["alerts"]}


@pytest.mark.integration
async def test_list_and_stream_show_only_the_callers_tenant(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    """Tenant A sees A's alerts; an alert of no known tenant (no consent recorded) is shown only
    to `admin` tokens, on GET /v1/alerts, GET /v1/alerts/{id}, the ack and the stream alike."""
    reader_a, reader_b = bearer(idp, "alerts:read"), bearer(idp, "alerts:read", tenant="tenant-b")
    admin_b = bearer(idp, "alerts:read admin", tenant="tenant-b")
    yellow = Severity.YELLOW
    async with notifier(broker, idp, tmp_path, fake_slack, twilio) as service:
        await patients_of(service, {"pt-a": "tenant-a", "pt-b": "tenant-b"})
        await publish_alerts(
            broker,
            alert_event("e-a", alert_id="a-a", patient="pt-a", severity=yellow),
            alert_event("e-b", alert_id="a-b", patient="pt-b", severity=yellow),
            alert_event("e-u", alert_id="a-u", patient="pt-unknown", severity=yellow),
        )
        assert await eventually_async(lambda: _listed(service, admin_b, {"a-b", "a-u"}))
        async with (
            httpx.AsyncClient(base_url=service.url, timeout=10) as client,
            client.stream("GET", "/v1/alerts/stream", headers=reader_a) as stream_a,
            client.stream("GET", "/v1/alerts/stream", headers=admin_b) as stream_b,
        ):
            events_a, events_b = sse(stream_a), sse(stream_b)
            _, snapshot_a = await next_event(events_a)
            _, snapshot_b = await next_event(events_b)
            await publish_alerts(
                broker,
                alert_event("e-b2", alert_id="a-b2", patient="pt-b", severity=yellow),
                alert_event("e-u2", alert_id="a-u2", patient="pt-unknown", severity=yellow),
            )
            seen_b = await _alerts_until(events_b, {"a-b2", "a-u2"})
            await publish_alerts(broker, alert_event("e-a2", alert_id="a-a2", patient="pt-a"))
            seen_a = await _alerts_until(events_a, {"a-a2"})
        listed_a = await ids_listed(service, reader_a)
        listed_b = await ids_listed(service, reader_b)
        listed_admin_b = await ids_listed(service, admin_b)
        unknown_as_a = await api(service, "GET", "/v1/alerts/a-u", reader_a)
        unknown_as_admin = await api(service, "GET", "/v1/alerts/a-u", admin_b)
        a_as_admin_b = await api(service, "GET", "/v1/alerts/a-a", admin_b)
        ack_unknown = await api(service, "POST", "/v1/alerts/a-u/ack", bearer(idp, "alerts:ack"))
    assert [a["alert_id"] for a in snapshot_a["alerts"]] == ["a-a"]
    assert {a["alert_id"] for a in snapshot_b["alerts"]} == {"a-b", "a-u"}
    assert seen_a <= {"a-a", "a-a2"}  # changes of its own alerts only
    assert seen_b <= {"a-b", "a-b2", "a-u", "a-u2"}
    assert listed_a == {"a-a", "a-a2"}
    assert listed_b == {"a-b", "a-b2"}
    assert listed_admin_b == {"a-b", "a-b2", "a-u", "a-u2"}
    assert (unknown_as_a.status_code, unknown_as_admin.status_code) == (404, 200)
    assert a_as_admin_b.status_code == 404  # admin of B still never sees A's alerts
    assert ack_unknown.status_code == 404


async def _listed(service: Service, headers: dict[str, str], wanted: set[str]) -> bool:
    return wanted <= await ids_listed(service, headers)


async def _alerts_until(events: AsyncIterator[tuple[str, str]], wanted: set[str]) -> set[str]:
    """Read `alert` events until every wanted id came; return every alert id seen."""
    seen: set[str] = set()
    while not wanted <= seen:
        kind, data = await next_event(events, timeout=10)
        assert kind == "alert"
        seen.add(data["alert_id"])
    return seen


ACK_BODIES: list[tuple[dict[str, str] | None, int, str | None]] = [
    ({"via": "dashboard"}, 200, "dashboard"),
    (None, 200, "api"),
    ({"via": "slack"}, 422, None),  # Slack acks come signed, from the button, not with a token
    ({"via": "fax"}, 422, None),
]


@pytest.mark.integration
async def test_an_ack_records_where_it_came_from_and_refuses_unknown_origins(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    answers = []
    async with notifier(broker, idp, tmp_path, fake_slack, twilio) as service:
        await patients_of(service, {"pt-1": "tenant-a"})
        for n, (body, _, _) in enumerate(ACK_BODIES):
            alert_id = f"a-{n}"
            event = alert_event(f"e-{n}", alert_id=alert_id, severity=Severity.YELLOW)
            await feed(service.notifier, event)
            kw: dict[str, Any] = {} if body is None else {"json": body}
            path = f"/v1/alerts/{alert_id}"
            ack = await api(service, "POST", f"{path}/ack", bearer(idp, "alerts:ack"), **kw)
            answers.append((ack, await api(service, "GET", path, bearer(idp, "alerts:read"))))
        # user-1 is in no routing file: Slack names the token subject, not a mention of nobody
        said = await eventually(lambda: _slack_texts_saying(fake_slack, "Acknowledged by"))
    assert all("Acknowledged by user-1" in t for t in said) and "<@user-1>" not in str(said)
    for (ack, detail), (_, status, via) in zip(answers, ACK_BODIES, strict=True):
        assert ack.status_code == status, ack.text
        if status == 422:
            error = ack.json()["error"]
            assert error["code"] == "validation_error" and "via" in json.dumps(error["details"])
            assert detail.json()["status"] == "open"  # nothing was acknowledged
            continue
        assert (ack.json()["acknowledged_via"], detail.json()["acknowledged_via"]) == (via, via)
        (noted,) = [e for e in detail.json()["timeline"] if e["kind"] == "acknowledged"]
        assert (noted["actor"], noted["channel"]) == ("user-1", via)


@pytest.mark.integration
async def test_agent_acknowledges_a_live_red_alert_in_chromium(
    broker: str, idp: FakeIdP, tmp_path: Path, fake_slack: FakeSlack, twilio: FakeTwilio
) -> None:
    from playwright.async_api import expect

    async with (
        notifier(broker, idp, tmp_path, fake_slack, twilio) as service,
        chromium_page() as browser,
    ):
        await patients_of(service, {"pt-1": "tenant-a", "pt-2": "tenant-a", "pt-3": "tenant-a"})
        await publish_alerts(
            broker,
            alert_event("e-y", alert_id="a-yellow", patient="pt-2", severity=Severity.YELLOW),
        )
        yellow_post = await eventually(lambda: main_post(fake_slack, "a-yellow"))
        page = browser.page
        await page.goto(f"{service.url}/")
        await page.get_by_label("Access token").fill(_token(idp, "alerts:read alerts:ack"))
        await page.get_by_role("button", name="Connect").click()
        status = page.get_by_test_id("connection-status")
        await expect(status).to_have_text("Live")
        rows = page.get_by_test_id("alert-row")
        await expect(rows).to_have_count(1)

        await publish_alerts(broker, alert_event("e-r", alert_id="a-red", patient="pt-1"))
        red = page.locator('[data-testid="alert-row"][data-alert-id="a-red"]')
        await expect(rows.first).to_have_attribute("data-alert-id", "a-red")  # red above yellow
        await expect(red.get_by_test_id("severity")).to_have_text("RED")
        await expect(red.locator(".badge")).to_have_css("background-color", "rgb(183, 28, 28)")
        await expect(red.get_by_test_id("level")).to_have_text("Level 2")  # climbed after 2 s
        age = red.get_by_test_id("age")
        await expect(age).to_have_text(re.compile(r"^\d+ s$"))
        await expect(age).not_to_have_text(await age.text_content() or "")  # it ticks
        patient = page.locator('[data-testid="patient"][data-patient-id="pt-1"]')
        await expect(patient).to_have_attribute("data-severity", "red")
        red_post = main_post(fake_slack, "a-red")
        assert red_post is not None

        await page.get_by_role(
            "button", name=re.compile(r"^Acknowledge red .* alert for patient pt-1$")
        ).click()
        await expect(red.get_by_test_id("acked-by")).to_have_text("ana")
        await expect(red.get_by_test_id("acked-via")).to_have_text("(via dashboard)")
        await expect(red).to_have_attribute("data-status", "acknowledged")
        await expect(red.get_by_test_id("ack-button")).to_have_count(0)
        update = await eventually(lambda: _edits(fake_slack, red_post, "Acknowledged by"))
        reply = await eventually(lambda: _replies(fake_slack, red_post, "Acknowledged by"))
        detail = await api(service, "GET", "/v1/alerts/a-red", bearer(idp, "alerts:read"))
        shot = await browser.screenshot("notifier-dashboard-acknowledged")

        # an ack from the Slack button and a resolution by the rules arrive live as well
        click = block_actions_payload(
            action_id="alert_ack", value="a-yellow", message_ts=yellow_post.ts
        )
        click["user"]["id"] = "U0MANAGER1"
        body, headers = signed_interaction(click, SIGNING_SECRET, int(time.time()))
        answer = await api(service, "POST", "/v1/slack/interactions", headers, content=body)
        assert answer.status_code == 200 and "Done" in answer.json()["text"]
        yellow = page.locator('[data-testid="alert-row"][data-alert-id="a-yellow"]')
        await expect(yellow.get_by_test_id("acked-by")).to_have_text("max")
        await expect(yellow.get_by_test_id("acked-via")).to_have_text("(via Slack)")
        await publish_alerts(
            broker,
            alert_event("e-r2", alert_id="a-red", patient="pt-1", kind=AlertKind.RESOLVED),
        )
        await expect(red).to_have_count(0)
        await expect(patient).to_have_attribute("data-severity", "green")
        await expect(patient).to_contain_text("No open alerts")

        # the stream drops (slow reader, restart): the page reconnects and catches up by snapshot
        service.app.state.feed.close()
        await expect(status).to_contain_text("reconnecting")
        await feed(service.notifier, alert_event("e-m", alert_id="a-missed", patient="pt-3"))
        assert service.app.state.feed.subscriber_count == 0  # committed while the page was away
        await expect(status).to_have_text("Live")
        await expect(
            page.locator('[data-testid="alert-row"][data-alert-id="a-missed"]')
        ).to_have_count(1)
        assert browser.errors == []  # no script error, no CSP violation
    assert "<@U0NURSE01>" in update.body["text"]  # the alert's own message, edited in place
    assert update.body["channel"] == "C0CAREALERT"
    actions = [b for b in update.body["blocks"] if b["type"] == "actions"]
    buttons = [e["action_id"] for b in actions for e in b["elements"]]
    assert "alert_ack" not in buttons  # its Acknowledge button is gone
    assert reply.body["text"] == ":eyes: Acknowledged by <@U0NURSE01>."
    timeline = [(e["kind"], e["actor"], e["channel"]) for e in detail.json()["timeline"]]
    assert ("acknowledged", "ana", "dashboard") in timeline
    assert shot.stat().st_size > 10_000


def _slack_texts_saying(slack: FakeSlack, text: str) -> list[str]:
    """Texts of posts and edits that say `text`."""
    return [c.body["text"] for c in [*slack.calls, *slack.updates] if text in c.body["text"]]


def _edits(slack: FakeSlack, post: SlackCall, text: str) -> SlackCall | None:
    """The chat.update of that message whose text says `text`."""
    return next(
        (u for u in list(slack.updates) if u.ts == post.ts and text in u.body["text"]), None
    )


def _replies(slack: FakeSlack, post: SlackCall, text: str) -> SlackCall | None:
    """The thread reply under that message whose text says `text`."""
    return next(
        (
            c
            for c in list(slack.calls)
            if c.body.get("thread_ts") == post.ts and text in c.body["text"]
        ),
        None,
    )
