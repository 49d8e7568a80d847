"""POST /v1/slack/interactions: a correctly signed body whose payload is not a button click is a
400 naming the problem, never a 500."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.notifier.interactions_api import build_callbacks_router
from services.notifier.settings import NotifierSettings
from shared.http import install_error_handlers
from tests.fakes.slack import block_actions_payload, signed_interaction
from tests.services.notifier.support import Clock, make_notifier

SECRET = "interactions-signing-secret"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_callbacks_router())
    app.state.settings = NotifierSettings(slack_signing_secret=SECRET)
    app.state.notifier = await make_notifier(f"sqlite:///{tmp_path}/n.db", Clock())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as c:
        yield c
    await app.state.notifier.store.engine.dispose()


async def press(client: httpx.AsyncClient, payload: Any) -> httpx.Response:
    body, headers = signed_interaction(payload, SECRET, int(time.time()))
    return await client.post("/v1/slack/interactions", content=body, headers=headers)


def click(**overrides: Any) -> dict[str, Any]:
    return block_actions_payload(action_id="alert_ack", value="a-404", message_ts="1.0") | overrides


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (click(actions={"a": 1}), "actions"),
        (click(actions=5), "actions"),
        (click(actions=[]), "actions"),
        (click(actions=["alert_ack"]), "actions.0"),
        (click(actions=[{"value": "a-1"}]), "actions.0.action_id"),
        (click(actions=[{"action_id": "alert_ack", "value": 7}]), "actions.0.value"),
        (click(user="U0NURSE01"), "user"),
        (click(user={"name": "nurse"}), "user.id"),
        ([click()], "JSON object"),
        ("ok", "JSON object"),
    ],
)
async def test_a_signed_payload_of_the_wrong_shape_is_a_400_naming_the_field(
    client: httpx.AsyncClient, payload: Any, named: str
) -> None:
    answer = await press(client, payload)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_payload" and named in error["message"]


@pytest.mark.parametrize("body", [b"", b"payload=%7Bnot-json", b"other=1"])
async def test_a_signed_body_without_a_json_payload_is_a_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }
    answer = await client.post("/v1/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 400 and "payload" in answer.json()["error"]["message"]


async def test_a_well_formed_click_on_an_unknown_alert_is_answered_not_refused(
    client: httpx.AsyncClient,
) -> None:
    answer = await press(client, click())
    assert answer.status_code == 200 and "does not exist" in answer.json()["text"]
