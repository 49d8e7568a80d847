"""The bearer dependency over HTTP: where a token may come from, scopes, refusals and their audit.

Covers T09 (insufficient scope) and T13 (malformed input: 4xx, never 500, never logged).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from structlog.testing import capture_logs

from shared.auth import build_token_validator
from shared.settings import ServiceSettings
from tests.conftest import serving
from tests.fakes.idp import b64url
from tests.shared.auth_harness import NOW, Harness, harness, protected_app


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness() as h:
        yield h


async def test_t09_a_missing_scope_is_403_with_a_challenge_naming_it(h: Harness) -> None:
    token = h.idp.mint(now=NOW, scope="consent:read")
    resp = await h.call(token, path="/v1/consents/c-1:revoke", headers={"X-Request-ID": "req-9"})
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "insufficient_scope"
    assert resp.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="consent:revoke"'
    )
    (record,) = h.sink.records
    assert (record.action, record.outcome, record.reason) == (
        "authz.denied",
        "denied",
        "insufficient_scope",
    )
    assert (record.actor.type, record.actor.id, record.actor.tenant_id) == (
        "user",
        "user-1",
        "tenant-a",
    )
    assert (record.service, record.request_id, record.tenant_id) == ("consent", "req-9", "tenant-a")
    assert record.details["route"] == "/v1/consents/{consent_id}:revoke"


async def test_a_refusal_is_audited_as_anonymous_and_without_the_token(h: Harness) -> None:
    token = h.idp.mint(now=NOW, exp=NOW - 3600)
    with capture_logs() as logs:
        resp = await h.call(token)
    assert resp.status_code == 401
    (record,) = h.sink.records
    assert record.action == "authz.denied" and record.reason == "expired"
    assert (record.actor.type, record.actor.id) == ("anonymous", "anonymous")
    assert token not in record.model_dump_json()
    assert any(e["event"] == "authz_denied" for e in logs)
    assert all(token not in str(e) and token[:40] not in str(e) for e in logs)


async def test_a_failing_audit_sink_does_not_turn_a_refusal_into_a_500(h: Harness) -> None:
    h.sink.fail = True
    assert (await h.call("not-a-token")).status_code == 401


async def test_no_token_is_401_with_a_bare_bearer_challenge(h: Harness) -> None:
    resp = await h.call()
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "missing_token"
    assert resp.headers["www-authenticate"] == "Bearer"
    assert h.sink.records[0].actor.type == "anonymous"


def _bad_headers(valid: str) -> dict[str, list[tuple[str, str]]]:
    head = b64url(b'{"alg":"RS256","typ":"at+jwt"}')
    return {
        "basic": [("Authorization", "Basic dXNlcjpwYXNz")],
        "bearer-empty": [("Authorization", "Bearer ")],
        "bearer-only": [("Authorization", "Bearer")],
        "two-tokens": [("Authorization", f"Bearer {valid} {valid}")],
        "duplicate": [("Authorization", f"Bearer {valid}"), ("Authorization", f"Bearer {valid}")],
        "1mb": [("Authorization", "Bearer " + "a" * 1_000_000)],
        "not-b64url": [("Authorization", f"Bearer {head}.e$30.abc")],
        "b64-not-url": [("Authorization", f"Bearer {head}.a+/b.abc")],
        "two-dots-jwe-like": [("Authorization", f"Bearer {head}.a.b.c.d")],
        "one-dot": [("Authorization", f"Bearer {head}.abc")],
        "empty-segments": [("Authorization", "Bearer ..")],
        "header-array": [("Authorization", f"Bearer {b64url(b'[1]')}.e30.abc")],
        "header-not-utf8": [("Authorization", f"Bearer {b64url(bytes([0xFF, 0xFE]))}.e30.abc")],
        "payload-not-json": [("Authorization", f"Bearer {valid.split('.')[0]}.bm90LWpzb24.abc")],
    }


@pytest.mark.parametrize("case", list(_bad_headers("x")))
async def test_t13_malformed_credentials_are_a_fast_4xx_never_logged(h: Harness, case: str) -> None:
    valid = h.idp.mint(now=NOW)
    headers = _bad_headers(valid)[case]
    with capture_logs() as logs:
        resp = await h.client.get("/v1/consents", headers=headers)
    assert resp.status_code in (400, 401), resp.text
    assert resp.json()["error"]["code"] in ("invalid_token", "missing_token", "invalid_request")
    assert "Bearer" in resp.headers["www-authenticate"]
    for _, value in headers:
        token = value.partition(" ")[2]
        assert not token or all(token[:40] not in str(e) for e in logs)
        assert not token or token[:40] not in h.sink.records[-1].model_dump_json()


async def test_t13_duplicate_authorization_headers_are_400(h: Harness) -> None:
    valid = h.idp.mint(now=NOW)
    resp = await h.client.get("/v1/consents", headers=_bad_headers(valid)["duplicate"])
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("also_in_header", [False, True])
async def test_t13_a_token_in_the_query_string_is_refused(h: Harness, also_in_header: bool) -> None:
    valid = h.idp.mint(now=NOW)
    resp = await h.call(valid if also_in_header else None, params={"access_token": valid})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_request"
    assert valid not in h.sink.records[-1].model_dump_json()


async def test_the_scheme_name_is_case_insensitive(h: Harness) -> None:
    valid = h.idp.mint(now=NOW)
    resp = await h.client.get("/v1/consents", headers={"Authorization": f"bearer {valid}"})
    assert resp.status_code == 200


async def test_t13_a_1mb_header_over_real_http_is_refused_not_crashed(h: Harness) -> None:
    async with serving(h.app) as url, httpx.AsyncClient() as client:
        resp = await client.get(
            f"{url}/v1/consents", headers={"Authorization": "Bearer " + "a" * 1_000_000}
        )
        ok = await client.get(
            f"{url}/v1/consents", headers={"Authorization": f"Bearer {h.idp.mint(now=NOW)}"}
        )
    assert 400 <= resp.status_code < 500
    assert ok.status_code == 200


async def test_unconfigured_auth_refuses_with_503_instead_of_allowing() -> None:
    app = protected_app(None, None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://consent") as client:
        for headers in ({}, {"Authorization": "Bearer a.b.c"}):
            resp = await client.get("/v1/consents", headers=headers)
            assert resp.status_code == 503
            assert resp.json()["error"]["code"] == "auth_not_configured"


@pytest.mark.parametrize("unset", ["auth_jwks_url", "auth_issuer", "auth_audience"])
async def test_build_token_validator_needs_all_three_settings(unset: str) -> None:
    values = {"auth_jwks_url": "http://idp/jwks", "auth_issuer": "http://idp", "auth_audience": "a"}
    async with httpx.AsyncClient() as http:
        assert build_token_validator(ServiceSettings(**values), http) is not None
        assert build_token_validator(ServiceSettings(**{**values, unset: ""}), http) is None
