"""POST /v1/readings answers the same whether the fast path or the full app serves it.

The fast path (services.ingest.fastpath) serves a request only once its token was verified by an
earlier request; so each case here is sent twice to fresh apps: with a token the app has never
seen (the full app answers) and after one request that verified it (the fast path answers, or
hands the request over). Status, error body and the headers a client acts on must be equal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from deploy.embedded_broker import free_port
from services.ingest.adapters.consent import ConsentViewAdapter
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.consent_view import ConsentState
from tests.conftest import auth_settings
from tests.fakes.idp import FakeIdP

CAP = 4096
MEASURED_AT = datetime.now(UTC).isoformat()
READING = {
    "patient_id": "pt-1",
    "metric": "heart_rate",
    "value": 80,
    "unit": "/min",
    "measured_at": MEASURED_AT,
    "source": "api",
}
VALID = json.dumps({"readings": [READING]}).encode()
Client = Callable[[], AsyncIterator[httpx.AsyncClient]]


def app_client(idp: FakeIdP, *, consent_loaded: bool) -> httpx.AsyncClient:
    """A client of a fresh ingest app; no broker listens, so valid readings get a 503."""
    settings = IngestSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        ingest_max_body_bytes=CAP,
        **auth_settings(idp),
    )
    app = create_app(settings)
    if consent_loaded:  # then the 503 is the broker's, not the consent view's
        state = ConsentState(consent_required=False)
        state.caught_up = True
        app.state.consent = ConsentViewAdapter(state)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")


def token(idp: FakeIdP, scope: str = "readings:write") -> str:
    return idp.mint(now=int(datetime.now(UTC).timestamp()), scope=scope)


async def answer_cold_and_warm(
    idp: FakeIdP, send: Callable[[httpx.AsyncClient, str], Any], *, consent_loaded: bool = True
) -> tuple[httpx.Response, httpx.Response]:
    """`send` on an app that never saw the token, then on one that verified it just before."""
    raw = token(idp)
    async with app_client(idp, consent_loaded=consent_loaded) as cold:
        first = await send(cold, raw)
    async with app_client(idp, consent_loaded=consent_loaded) as warm:
        verified = await warm.post("/v1/readings", content=VALID, headers=_headers(raw))
        assert verified.status_code == 503, verified.text  # token checked, broker down
        second = await send(warm, raw)
    return first, second


def _headers(raw: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}", "Content-Type": "application/json", **extra}


def post(
    content: bytes, path: str = "/v1/readings", **headers: str
) -> Callable[[httpx.AsyncClient, str], Any]:
    def send(client: httpx.AsyncClient, raw: str) -> Any:
        return client.post(path, content=content, headers=_headers(raw, **headers))

    return send


def same_answer(first: httpx.Response, second: httpx.Response) -> dict[str, Any]:
    assert (first.status_code, first.json()) == (second.status_code, second.json())
    for name in ("retry-after", "www-authenticate", "content-type"):
        assert first.headers.get(name) == second.headers.get(name), name
    assert second.headers["x-request-id"]
    body: dict[str, Any] = second.json()
    return body


def reading_body(**overrides: object) -> bytes:
    return json.dumps({"readings": [{**READING, **overrides}]}).encode()


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (post(VALID), 503, "broker_unavailable"),
        (post(VALID, **{"Content-Type": "application/json; charset=utf-8"}), 503, None),
        (post(VALID, **{"Content-Type": "text/plain"}), 415, "unsupported_media_type"),
        (post(b'{"readings": [}'), 400, "malformed_json"),
        (post(b""), 422, "validation_error"),
        (post(reading_body(value="80")), 422, "validation_error"),
        (post(reading_body(unit="mg/dL")), 422, "invalid_reading"),
        (post(reading_body(extra=1)), 422, "validation_error"),
        (post(b"x" * (CAP + 1)), 413, "body_too_large"),
        (post(VALID, "/v1/readings?access_token=abc"), 401, "invalid_request"),
        (post(VALID, "/v1/readings?source=x"), 503, None),
    ],
    ids=[
        "valid",
        "charset",
        "content-type",
        "malformed",
        "empty",
        "wrong-type",
        "unit",
        "extra-field",
        "over-cap",
        "token-in-query",
        "query",
    ],
)
async def test_answer_is_the_same_before_and_after_the_token_was_verified(
    idp: FakeIdP, send: Callable[[httpx.AsyncClient, str], Any], status: int, code: str | None
) -> None:
    first, second = await answer_cold_and_warm(idp, send)
    body = same_answer(first, second)
    assert second.status_code == status, second.text
    if code is not None:
        assert body["error"]["code"] == code


async def test_a_refused_caller_is_refused_the_same_after_the_token_was_verified(
    idp: FakeIdP,
) -> None:
    no_scope = token(idp, scope="admin")

    async def twice_authorized(client: httpx.AsyncClient, raw: str) -> httpx.Response:
        return await client.post(
            "/v1/readings",
            content=VALID,
            headers=[
                ("Authorization", f"Bearer {raw}"),
                ("Authorization", f"Bearer {raw}"),
                ("Content-Type", "application/json"),
            ],
        )

    async def lowercase_scheme(client: httpx.AsyncClient, raw: str) -> httpx.Response:
        return await client.post(
            "/v1/readings",
            content=VALID,
            headers={**_headers(raw), "Authorization": f"bearer {raw}"},
        )

    async def other_token_without_scope(client: httpx.AsyncClient, _: str) -> httpx.Response:
        return await client.post("/v1/readings", content=VALID, headers=_headers(no_scope))

    for send, status in (
        (twice_authorized, 400),
        (lowercase_scheme, 503),  # the scheme is case-insensitive: accepted, broker down
        (other_token_without_scope, 403),
    ):
        first, second = await answer_cold_and_warm(idp, send)
        same_answer(first, second)
        assert second.status_code == status, second.text


async def test_consent_view_loading_is_the_same_503_on_both_paths(idp: FakeIdP) -> None:
    first, second = await answer_cold_and_warm(idp, post(VALID), consent_loaded=False)
    assert same_answer(first, second)["error"]["code"] == "consent_view_loading"


async def test_the_request_id_is_echoed_and_every_answer_is_counted(idp: FakeIdP) -> None:
    raw = token(idp)
    async with app_client(idp, consent_loaded=True) as client:
        for _ in range(3):  # the first is served by the full app, the others by the fast path
            response = await client.post(
                "/v1/readings", content=VALID, headers=_headers(raw, **{"X-Request-ID": "req-7"})
            )
            assert response.status_code == 503
            assert response.headers["x-request-id"] == "req-7"
        generated = await client.post("/v1/readings", content=VALID, headers=_headers(raw))
        assert len(generated.headers["x-request-id"]) == 32
        metrics = (await client.get("/metrics")).text
    line = next(
        m
        for m in metrics.splitlines()
        if m.startswith("http_request_seconds_count")
        and 'route="/v1/readings"' in m
        and 'status="503"' in m
    )
    assert line.endswith(" 4.0"), line
