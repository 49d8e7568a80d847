"""The JWKS cache against a real (fake) IdP: flood resistance, rotation, outages (T10, T11).

The cache's monotonic clock is moved by hand, so TTL and cooldown are exact without sleeping.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.auth import JwksCache, JwksUnavailableError
from tests.fakes.idp import DROP, new_key
from tests.shared.auth_harness import NOW, FakeClock, Harness, harness

COOLDOWN = 30.0
TTL = 300.0


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness(ttl_s=TTL, cooldown_s=COOLDOWN) as h:
        yield h


async def _flood(h: Harness, n: int) -> list[int]:
    tokens = [h.idp.mint(now=NOW, key=new_key("ES256", kid=uuid.uuid4().hex)) for _ in range(n)]
    responses = await asyncio.gather(*(h.call(t) for t in tokens))
    return [r.status_code for r in responses]


async def test_t10_a_random_kid_flood_fetches_the_jwks_at_most_once_per_cooldown(
    h: Harness,
) -> None:
    assert set(await _flood(h, 40)) == {401}
    assert h.idp.fetches == 1  # the first load; the unknown kids found it within the cooldown
    h.mono.advance(COOLDOWN - 1)
    assert set(await _flood(h, 40)) == {401}
    assert h.idp.fetches == 1
    h.mono.advance(2)
    assert set(await _flood(h, 40)) == {401}
    assert h.idp.fetches == 2  # one refresh for the whole burst (single flight)
    assert set(h.outbound) == {h.idp.jwks_url}


async def test_a_token_without_kid_never_triggers_a_refresh(h: Harness) -> None:
    h.idp.publish(new_key("RS256"))  # two keys: a kid-less token matches none
    assert (await h.call(h.idp.mint(now=NOW))).status_code == 200
    h.mono.advance(COOLDOWN + 1)
    stranger = new_key("RS256")
    resp = await h.call(h.idp.mint(now=NOW, key=stranger, header={"kid": DROP}))
    assert resp.status_code == 401
    assert h.idp.fetches == 1


async def test_t11_a_rotated_in_key_is_accepted_after_one_refresh_without_restart(
    h: Harness,
) -> None:
    old = h.idp.published[0]
    assert (await h.call(h.idp.mint(now=NOW, key=old))).status_code == 200
    new = new_key("RS256")
    h.idp.publish(new)
    h.idp.retire(old.kid)
    h.mono.advance(COOLDOWN + 1)
    assert (await h.call(h.idp.mint(now=NOW, key=new))).status_code == 200
    assert h.idp.fetches == 2
    # The refresh brought the set without the old key: it is refused, and costs no further fetch.
    assert (await h.call(h.idp.mint(now=NOW, key=old))).status_code == 401
    assert h.idp.fetches == 2


async def test_t11_a_removed_key_is_refused_once_the_ttl_expires(h: Harness) -> None:
    old = h.idp.published[0]
    h.idp.publish(new_key("RS256"))
    assert (await h.call(h.idp.mint(now=NOW, key=old))).status_code == 200
    h.idp.retire(old.kid)
    h.mono.advance(TTL - 1)
    assert (await h.call(h.idp.mint(now=NOW, key=old))).status_code == 200  # cached, by design
    h.mono.advance(2)
    assert (await h.call(h.idp.mint(now=NOW, key=old))).status_code == 401
    assert h.idp.fetches == 2


async def test_an_unreachable_idp_fails_closed_and_is_not_hammered(h: Harness) -> None:
    h.idp.fail_next = 100
    for _ in range(5):
        resp = await h.call(h.idp.mint(now=NOW))
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "auth_unavailable"
    assert h.idp.fetches == 1  # the failed fetch counts toward the cooldown
    h.idp.fail_next = 0
    h.mono.advance(COOLDOWN + 1)
    assert (await h.call(h.idp.mint(now=NOW))).status_code == 200
    assert h.idp.fetches == 2


async def test_a_failed_refresh_keeps_the_cached_keys(h: Harness) -> None:
    assert (await h.call(h.idp.mint(now=NOW))).status_code == 200
    h.idp.fail_next = 1
    h.mono.advance(COOLDOWN + 1)
    stranger = new_key("RS256")
    assert (await h.call(h.idp.mint(now=NOW, key=stranger))).status_code == 401
    assert (await h.call(h.idp.mint(now=NOW))).status_code == 200
    assert h.idp.fetches == 2


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"keys": []}',
        b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}',
        b'{"keys": [{"kty": "RSA", "kid": "weak", "n": "AQAB", "e": "AQAB"}]}',
        b'{"keys": [{"kty": "RSA", "kid": "broken", "n": "' + b"A" * 342 + b'", "e": "AQAB"}]}',
        b'{"keys": [{"kty": "EC", "kid": "broken", "crv": "P-256", "x": "%", "y": "%"}]}',
        b'{"keys": "x"}',
        b"{" + b" " * 300_000 + b"}",
    ],
)
async def test_an_unusable_jwks_document_is_a_failed_fetch(body: bytes) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=body))
    async with httpx.AsyncClient(transport=transport) as http:
        cache = JwksCache(
            url="http://idp/jwks", http=http, ttl_s=1, cooldown_s=1, clock=FakeClock()
        )
        with pytest.raises(JwksUnavailableError):
            await cache.get()


async def test_symmetric_and_weak_keys_are_dropped_from_the_set() -> None:
    good = new_key("RS256").public_jwk()
    weak = {"kty": "RSA", "kid": "weak", "n": "sXch", "e": "AQAB"}
    enc = {**new_key("RS256").public_jwk(), "use": "enc", "kid": "enc"}
    hmac = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}
    doc = {"keys": [good, weak, enc, hmac]}
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=doc))
    async with httpx.AsyncClient(transport=transport) as http:
        cache = JwksCache(
            url="http://idp/jwks", http=http, ttl_s=1, cooldown_s=1, clock=FakeClock()
        )
        assert [k.kid for k in await cache.get()] == [good["kid"]]
