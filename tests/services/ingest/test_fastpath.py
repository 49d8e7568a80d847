"""POST /v1/readings answers the same whether the fast path or the full app serves it.

The fast path (services.ingest.fastpath) serves a request only once its token was verified by an
earlier request; so each case here is sent to two fresh apps: one that never saw the token (the
full app answers) and one where a first request with that token verified it (the fast path
answers, or hands the request over). Status, body and headers must be equal; where the fast path
should serve, the warm app must not have validated the token again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from deploy.embedded_broker import free_port
from services.ingest.adapters.consent import ConsentViewAdapter
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.auth import Principal
from shared.auth.tokens import TokenValidator
from shared.consent_view import ConsentState
from shared.http import wrap_outermost
from tests.conftest import auth_settings
from tests.fakes.idp import FakeIdP

CAP = 4096
READING = {
    "patient_id": "pt-1",
    "metric": "heart_rate",
    "value": 80,
    "unit": "/min",
    "measured_at": datetime.now(UTC).isoformat(),
    "source": "api",
}
VALID = json.dumps({"readings": [READING]}).encode()
Send = Callable[[httpx.AsyncClient, str], Any]


@dataclass
class Served:
    """A fresh ingest app (no broker listens: valid readings get a 503) and its client."""

    app: FastAPI
    client: httpx.AsyncClient
    validations: int = 0  # calls of the real validator's validate()


def serve(
    idp: FakeIdP,
    *,
    consent_loaded: bool = True,
    clock: Callable[[], float] | None = None,
    root_path: str = "",
) -> Served:
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
    validator: TokenValidator = app.state.token_validator
    if clock is not None:
        validator = TokenValidator(
            validator._jwks, issuer=idp.issuer, audience=idp.audience, clock=clock
        )
        app.state.token_validator = validator
    transport = httpx.ASGITransport(app=app, root_path=root_path)  # as a proxy's prefix
    served = Served(app, httpx.AsyncClient(transport=transport, base_url="http://ingest"))
    real = validator.validate

    async def counted(raw: str) -> Principal:
        served.validations += 1
        return await real(raw)

    validator.validate = counted  # type: ignore[method-assign]
    return served


def mint(idp: FakeIdP, scope: str = "readings:write", **claims: Any) -> str:
    return idp.mint(now=int(datetime.now(UTC).timestamp()), scope=scope, **claims)


def headers(raw: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}", "Content-Type": "application/json", **extra}


async def cold_and_warm(
    idp: FakeIdP,
    send: Send,
    *,
    raw: str | None = None,
    consent_loaded: bool = True,
    root_path: str = "",
) -> tuple[httpx.Response, httpx.Response, int]:
    """`send` on an app that never saw the token, then on one where a first request verified it;
    also how often the warm app validated the token while answering `send`."""
    raw = raw or mint(idp)
    cold = serve(idp, consent_loaded=consent_loaded, root_path=root_path)
    async with cold.client:
        first = await send(cold.client, raw)
    warm = serve(idp, consent_loaded=consent_loaded, root_path=root_path)
    async with warm.client:
        await warm.client.post(f"{root_path}/v1/readings", content=VALID, headers=headers(raw))
        assert warm.validations == 1
        second = await send(warm.client, raw)
    return first, second, warm.validations - 1


def post(content: Any, path: str = "/v1/readings", **extra: str) -> Send:
    def send(client: httpx.AsyncClient, raw: str) -> Any:
        body = content() if callable(content) else content
        return client.post(path, content=body, headers=headers(raw, **extra))

    return send


def same_answer(first: httpx.Response, second: httpx.Response) -> None:
    """Equal status, body and headers (order aside; the request id differs by design)."""

    def comparable(response: httpx.Response) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in response.headers.items() if k != "x-request-id")

    assert (first.status_code, first.content) == (second.status_code, second.content)
    assert comparable(first) == comparable(second)
    assert ("x-request-id" in first.headers) == ("x-request-id" in second.headers)


def reading_body(**overrides: object) -> bytes:
    return json.dumps({"readings": [{**READING, **overrides}]}).encode()


def chunked(data: bytes, size: int) -> Callable[[], AsyncIterator[bytes]]:
    """A body sent in several ASGI messages without a Content-Length (chunked upload)."""

    async def parts() -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    return parts


OVER_CAP_VALID = json.dumps(
    {"readings": [{**READING, "patient_id": f"pt-{i}"} for i in range(60)]}
).encode()
assert len(OVER_CAP_VALID) > CAP


@pytest.mark.parametrize(
    ("send", "status", "code", "fast"),
    [
        (post(VALID), 503, "broker_unavailable", True),
        (post(VALID, **{"Content-Type": "application/json; charset=utf-8"}), 503, None, True),
        (post(chunked(VALID, 7)), 503, "broker_unavailable", True),
        (post(reading_body(unit="mg/dL")), 422, "invalid_reading", True),
        (post(VALID, **{"Content-Length": "0" * 5000 + str(len(VALID))}), 503, None, True),
        (post(VALID, **{"Content-Type": "text/plain"}), 415, "unsupported_media_type", False),
        (post(b'{"readings": [}'), 400, "malformed_json", False),
        (post(b""), 422, "validation_error", False),
        (post(reading_body(value="80")), 422, "validation_error", False),
        (post(reading_body(extra=1)), 422, "validation_error", False),
        (post(b"x" * (CAP + 1)), 413, "body_too_large", False),
        (post(chunked(OVER_CAP_VALID, 512)), 413, "body_too_large", False),
        (post(VALID, "/v1/readings?access_token=abc"), 401, "invalid_request", False),
        (post(VALID, "/v1/readings?source=x"), 503, None, False),
    ],
    ids=[
        "valid",
        "charset",
        "chunked",
        "unit",
        "leading-zeros-length",
        "content-type",
        "malformed",
        "empty",
        "wrong-type",
        "extra-field",
        "over-cap",
        "chunked-over-cap",
        "token-in-query",
        "query",
    ],
)
async def test_answer_is_the_same_before_and_after_the_token_was_verified(
    idp: FakeIdP, send: Send, status: int, code: str | None, fast: bool
) -> None:
    first, second, validations = await cold_and_warm(idp, send)
    same_answer(first, second)
    assert second.status_code == status, second.text
    if code is not None:
        assert second.json()["error"]["code"] == code
    if fast:  # served from the cache of verified tokens, not by the full app's validation
        assert validations == 0


async def test_a_verified_token_without_the_scope_stays_refused(idp: FakeIdP) -> None:
    admin = mint(idp, scope="admin")
    first, second, _ = await cold_and_warm(idp, post(VALID), raw=admin)  # cached by the first
    same_answer(first, second)
    assert second.status_code == 403
    assert second.json()["error"]["code"] == "insufficient_scope"


async def test_other_header_shapes_go_to_the_full_app_and_get_its_answer(idp: FakeIdP) -> None:
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

    async def scheme(client: httpx.AsyncClient, raw: str) -> httpx.Response:
        return await client.post(
            "/v1/readings",
            content=VALID,
            headers={**headers(raw), "Authorization": f"bearer  {raw}"},
        )

    for send, status in ((twice_authorized, 400), (scheme, 503)):  # the scheme: case-insensitive
        first, second, _ = await cold_and_warm(idp, send)
        same_answer(first, second)
        assert second.status_code == status, second.text


async def test_a_token_past_its_expiry_is_not_served_from_the_cache(idp: FakeIdP) -> None:
    now = int(datetime.now(UTC).timestamp())
    clock = [float(now)]
    served = serve(idp, clock=lambda: clock[0])
    raw = idp.mint(now=now, exp=now + 5, scope="readings:write")
    async with served.client:
        verified = await served.client.post("/v1/readings", content=VALID, headers=headers(raw))
        assert verified.status_code == 503
        clock[0] = now + 40.0  # past exp + the 30 s leeway
        late = await served.client.post("/v1/readings", content=VALID, headers=headers(raw))
    assert late.status_code == 401, late.text
    assert late.json()["error"]["code"] == "invalid_token"
    assert served.validations == 2


async def test_consent_view_loading_is_the_same_503_on_both_paths(idp: FakeIdP) -> None:
    first, second, validations = await cold_and_warm(idp, post(VALID), consent_loaded=False)
    same_answer(first, second)
    assert second.json()["error"]["code"] == "consent_view_loading"
    assert validations == 0


async def test_behind_a_root_path_the_fast_path_still_serves(idp: FakeIdP) -> None:
    first, second, validations = await cold_and_warm(
        idp, post(VALID, "/ingest/v1/readings"), root_path="/ingest"
    )
    same_answer(first, second)
    assert second.status_code == 503
    assert validations == 0


async def test_the_request_id_is_echoed_and_every_answer_is_counted(idp: FakeIdP) -> None:
    raw = mint(idp)
    served = serve(idp)
    async with served.client as client:
        for _ in range(3):  # the first is served by the full app, the others by the fast path
            response = await client.post(
                "/v1/readings", content=VALID, headers=headers(raw, **{"X-Request-ID": "req-7"})
            )
            assert response.status_code == 503
            assert response.headers["x-request-id"] == "req-7"
        generated = await client.post("/v1/readings", content=VALID, headers=headers(raw))
        assert len(generated.headers["x-request-id"]) == 32
        metrics = (await client.get("/metrics")).text
    assert served.validations == 1
    line = next(
        m
        for m in metrics.splitlines()
        if m.startswith("http_request_seconds_count")
        and 'route="/v1/readings"' in m
        and 'status="503"' in m
    )
    assert line.endswith(" 4.0"), line


async def test_an_unexpected_error_is_a_plain_500_counted_like_the_apps(idp: FakeIdP) -> None:
    raw = mint(idp)
    served = serve(idp)

    class Broken:
        async def publish_readings(self, readings: object) -> None:
            raise RuntimeError("a bug")

    served.app.state.publisher = Broken()
    transport = httpx.ASGITransport(app=served.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        answers = [
            await client.post("/v1/readings", content=VALID, headers=headers(raw))
            for _ in range(2)  # the full app, then the fast path
        ]
        metrics = (await client.get("/metrics")).text
    assert [(a.status_code, a.text) for a in answers] == [(500, "Internal Server Error")] * 2
    assert 'route="/v1/readings",status="500"} 2.0' in metrics


def test_wrapping_an_app_that_already_served_is_refused() -> None:
    app = FastAPI()
    app.middleware_stack = app.build_middleware_stack()
    with pytest.raises(RuntimeError):
        wrap_outermost(app, lambda inner: inner)
