"""Bearer access tokens (RFC 9068) on a protected route: what is accepted and what is not (T01-T08).

The validator fetches the fake IdP's JWKS over real loopback HTTP; token times are relative to a
fixed validator clock (NOW), so leeway boundaries are exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from shared.auth import JwksCache, TokenValidator
from shared.auth.errors import InvalidTokenError
from tests.fakes.idp import DROP, FakeIdP, b64url, compact, hs256, new_key
from tests.shared.auth_harness import NOW, Harness, harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness() as h:
        yield h


def assert_invalid_token(resp: httpx.Response, h: Harness | None = None, reason: str = "") -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "invalid_token"
    assert resp.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    if h is not None:  # the audited reason shows which check refused it
        assert h.sink.records[-1].reason == reason


async def test_a_valid_token_reaches_the_route_as_a_principal(h: Harness) -> None:
    token = h.idp.mint(now=NOW, scope="consent:read consent:write", jti="j-1")
    resp = await h.call(token)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "sub": "user-1",
        "client_id": "app-1",
        "tenant_id": "tenant-a",
        "scopes": ["consent:read", "consent:write"],
        "jti": "j-1",
        "issuer": h.idp.issuer,
    }
    assert h.sink.records == []


async def test_es256_keys_are_accepted(h: Harness) -> None:
    ec = new_key("ES256")
    h.idp.publish(ec)
    assert (await h.call(h.idp.mint(now=NOW, key=ec))).status_code == 200


@pytest.mark.parametrize("kid", ["with-kid", None], ids=["kid", "no-kid"])
async def test_t01_alg_none_is_refused(h: Harness, kid: str | None) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": h.idp.published[0].kid if kid else DROP}
    unsigned = compact(header, h.idp.claims(now=NOW), lambda _: b"")
    assert_invalid_token(await h.call(unsigned), h, "malformed")  # no signature segment
    assert_invalid_token(await h.call(unsigned + "AAAA"), h, "alg_not_allowed")


def _public_pem(h: Harness) -> bytes:
    return h.idp.published[0].key.public_key.public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("secret_of", ["pem", "jwk_n", "jwk_json"])
async def test_t02_hs256_keyed_with_the_public_key_is_refused(h: Harness, secret_of: str) -> None:
    jwk = h.idp.published[0].public_jwk()
    secret = {
        "pem": lambda: _public_pem(h),
        "jwk_n": lambda: jwk["n"].encode(),
        "jwk_json": lambda: str(jwk).encode(),
    }[secret_of]()
    header = {"alg": "HS256", "typ": "at+jwt", "kid": jwk["kid"]}
    token = compact(header, h.idp.claims(now=NOW), hs256(secret))
    assert_invalid_token(await h.call(token), h, "alg_not_allowed")


@pytest.mark.parametrize("param", ["jwk", "jku", "x5u", "x5c"])
async def test_t03_key_material_or_urls_in_the_header_are_never_used(
    h: Harness, param: str
) -> None:
    attacker = new_key("RS256", kid="attacker")
    value: Any = {
        "jwk": attacker.public_jwk(),
        "jku": f"{h.idp.base_url}/attacker/jwks.json",
        "x5u": f"{h.idp.base_url}/attacker/cert.pem",
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    }[param]
    token = h.idp.mint(now=NOW, key=attacker, header={param: value})
    assert_invalid_token(await h.call(token), h, "forbidden_header")
    assert h.idp.other_requests == []
    assert set(h.outbound) <= {h.idp.jwks_url}
    assert h.idp.fetches <= 1


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"exp": NOW - 31}, 401),  # expired beyond the 30 s leeway
        ({"exp": NOW - 29}, 200),  # expired within the leeway
        ({"exp": NOW - 30}, 401),  # exactly at the boundary counts as expired
        ({"nbf": NOW + 31}, 401),
        ({"nbf": NOW + 29}, 200),
        ({"iat": NOW + 31}, 401),
        ({"iat": NOW + 29}, 200),
        ({"iat": NOW + 10 * 365 * 86400, "exp": NOW + 11 * 365 * 86400}, 401),
        ({"exp": "never"}, 401),
        ({"exp": True}, 401),
    ],
)
async def test_t04_time_claims_hold_within_the_leeway_only(
    h: Harness, claims: dict[str, Any], status: int
) -> None:
    resp = await h.call(h.idp.mint(now=NOW, **claims))
    assert resp.status_code == status, resp.text
    if status == 401:
        assert_invalid_token(resp)


@pytest.mark.parametrize(
    "claim", ["exp", "sub", "client_id", "jti", "iat", "tenant_id", "iss", "aud"]
)
async def test_t05_every_required_claim_must_be_present(h: Harness, claim: str) -> None:
    resp = await h.call(h.idp.mint(now=NOW, **{claim: DROP}))
    assert_invalid_token(resp, h, f"missing_claim:{claim}")


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", 42),
        ("client_id", ["a"]),
        ("jti", ""),
        ("tenant_id", {"id": "t"}),
        ("tenant_id", "ten\u200bant"),
        ("tenant_id", "../other"),
        ("scope", ["consent:read"]),
        ("sub", "x" * 257),
    ],
)
async def test_claims_of_the_wrong_shape_are_refused(h: Harness, claim: str, value: Any) -> None:
    assert_invalid_token(await h.call(h.idp.mint(now=NOW, **{claim: value})))


@pytest.mark.parametrize(
    ("aud", "status"),
    [
        ("ingest-api", 401),
        (["ingest-api", "notifier-api"], 401),
        ([], 401),
        ("consent-api-x", 401),
        (["ingest-api", "consent-api"], 200),
    ],
)
async def test_t06_the_audience_must_name_this_service(h: Harness, aud: Any, status: int) -> None:
    assert (await h.call(h.idp.mint(now=NOW, aud=aud))).status_code == status


@pytest.mark.parametrize(
    "iss",
    [
        "{issuer}/",
        "{https_issuer}",
        "{ISSUER}",
        "http://127.0.0.1:1/realms/other-tenant",
        ["{issuer}"],
    ],
)
async def test_t07_the_issuer_must_match_exactly(h: Harness, iss: Any) -> None:
    def fill(s: str) -> str:
        issuer = h.idp.issuer
        return s.format(
            issuer=issuer, ISSUER=issuer.upper(), https_issuer=issuer.replace("http:", "https:")
        )

    value = [fill(v) for v in iss] if isinstance(iss, list) else fill(iss)
    assert_invalid_token(await h.call(h.idp.mint(now=NOW, iss=value)))


@pytest.mark.parametrize(
    ("typ", "status"),
    [
        ("JWT", 401),
        (DROP, 401),
        ("id_token+jwt", 401),
        ("secevent+jwt", 401),
        (["at+jwt"], 401),
        ("at+jwt", 200),
        ("application/at+jwt", 200),
        ("AT+JWT", 200),
    ],
)
async def test_t08_only_access_tokens_are_accepted(h: Harness, typ: Any, status: int) -> None:
    resp = await h.call(h.idp.mint(now=NOW, header={"typ": typ}))
    assert resp.status_code == status, resp.text


async def test_a_key_pinned_to_rs256_does_not_verify_es256(h: Harness) -> None:
    rsa = h.idp.published[0]
    ec = new_key("ES256", kid=rsa.kid)  # same kid, other algorithm: the JWK's alg decides
    assert_invalid_token(await h.call(h.idp.mint(now=NOW, key=ec)), h, "unknown_key")


async def test_a_forged_signature_with_a_known_kid_is_refused(h: Harness) -> None:
    token = h.idp.mint(now=NOW)
    head, payload, _ = token.split(".")
    forged = h.idp.mint(now=NOW, scope="consent:read consent:revoke").split(".")[1]
    assert_invalid_token(await h.call(f"{head}.{forged}.{token.split('.')[2]}"), h, "bad_signature")
    assert_invalid_token(await h.call(f"{head}.{payload}.{b64url(b'x' * 256)}"), h, "bad_signature")


async def test_a_reused_token_is_served_from_the_verified_cache_only_until_it_expires() -> None:
    idp = FakeIdP().start()
    now = [float(NOW)]
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            jwks = JwksCache(url=idp.jwks_url, http=http, ttl_s=300, cooldown_s=30)
            validator = TokenValidator(
                jwks, issuer=idp.issuer, audience=idp.audience, leeway_s=30, clock=lambda: now[0]
            )
            token = idp.mint(now=NOW, exp=NOW + 45)
            assert (await validator.validate(token)).sub
            now[0] = NOW + 45 + 29  # within the leeway: still valid (from the cache)
            assert (await validator.validate(token)).sub
            now[0] = NOW + 45 + 30  # the leeway is over: the cache must not extend the token
            with pytest.raises(InvalidTokenError):
                await validator.validate(token)
    finally:
        idp.stop()
