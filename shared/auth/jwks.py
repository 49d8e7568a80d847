"""The identity provider's signing keys: cached, refetched at most once per cooldown, fail closed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from shared.auth.errors import JwksUnavailableError

log = structlog.get_logger(__name__)

ALLOWED_ALGS = ("RS256", "ES256")
MAX_JWKS_BYTES = 256 * 1024
_MIN_RSA_N_CHARS = 342  # base64url length of a 2048-bit modulus
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class JwksCache:
    """Fetch AUTH_JWKS_URL only: never a URL named by a token."""

    def __init__(
        self,
        *,
        url: str,
        http: httpx.AsyncClient,
        ttl_s: float,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url, self._http, self._cooldown = url, http, cooldown_s
        self._ttl = max(ttl_s, cooldown_s)  # keys fetched within the cooldown are never stale
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()  # single flight: one fetch at a time, others reuse its result

    async def get(self) -> KeySet:
        """Return the cached keys, fetching them when absent or older than the TTL."""
        if (keys := self._fresh()) is not None:
            return keys
        async with self._lock:
            if (keys := self._fresh()) is not None:
                return keys
            if self._cooling_down():  # the last attempt failed moments ago: do not hammer the IdP
                raise JwksUnavailableError("the identity provider's keys are unavailable")
            return await self._fetch()

    async def refresh_for(self, kid: str) -> KeySet:
        """Refetch for an unknown kid unless any fetch was attempted within the cooldown."""
        async with self._lock:
            if self._keys is not None and any(k.kid == kid for k in self._keys):
                return self._keys  # a concurrent refresh already brought it
            if not self._cooling_down():
                try:
                    return await self._fetch()
                except JwksUnavailableError:
                    pass  # keep the keys we have; the kid stays unknown
            if (keys := self._fresh()) is None:
                raise JwksUnavailableError("the identity provider's keys are unavailable")
            return keys

    def _fresh(self) -> KeySet | None:
        if self._keys is not None and self._clock() - self._fetched_at < self._ttl:
            return self._keys
        return None

    def _cooling_down(self) -> bool:
        return self._clock() - self._attempted_at < self._cooldown

    async def _fetch(self) -> KeySet:
        self._attempted_at = self._clock()
        try:
            keys = _import_keyset(json.loads(await self._download()))
        except (httpx.HTTPError, ValueError, TypeError, KeyError, JoseError) as exc:
            log.warning("jwks_fetch_failed", url=self._url, error=type(exc).__name__)
            raise JwksUnavailableError("the identity provider's keys are unavailable") from exc
        self._keys, self._fetched_at = keys, self._attempted_at
        log.info("jwks_fetched", url=self._url, kids=[k.kid for k in keys])
        return keys

    async def _download(self) -> bytes:
        body = bytearray()
        async with self._http.stream("GET", self._url, follow_redirects=False) as resp:
            resp.raise_for_status()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS response too large")
        return bytes(body)


def _import_keyset(data: Any) -> KeySet:
    """Keep the usable keys of a JWKS document; none usable is a failed fetch."""
    keys = [key for item in data["keys"] if (key := _usable_key(item)) is not None]
    if not keys:
        raise ValueError("JWKS holds no usable signing key")
    return KeySet(list(keys))


def _usable_key(item: Any) -> RSAKey | ECKey | None:
    """Import a public RSA (>= 2048 bit) or EC signature key usable with an allowed alg."""
    if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC"):
        return None
    if item.get("use", "sig") != "sig" or item.get("alg", ALLOWED_ALGS[0]) not in ALLOWED_ALGS:
        return None
    if item["kty"] == "RSA" and len(str(item.get("n", ""))) < _MIN_RSA_N_CHARS:
        return None  # weak modulus; checked before import, which would only warn
    public = {k: v for k, v in item.items() if k not in _PRIVATE_MEMBERS}
    try:
        key = RSAKey.import_key(public) if item["kty"] == "RSA" else ECKey.import_key(public)
    except (JoseError, ValueError, TypeError) as exc:
        log.warning("jwks_key_skipped", kid=str(item.get("kid"))[:128], error=type(exc).__name__)
        return None
    if isinstance(key, RSAKey) and key.public_key.key_size < 2048:
        return None
    return key
