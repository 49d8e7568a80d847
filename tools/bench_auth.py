"""Access tokens for the benchmark: a fake identity provider in the bench process.

The services trust the FakeIdP's JWKS (AUTH_* variables); the bench mints RFC 9068 tokens with the
scopes each call needs. Tokens live an hour; each phase takes its headers once before it starts
(a token older than a minute is re-minted then), so minting (an RSA signature) is never inside a
timed request and no phase meets an expired token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.fakes.idp import FakeIdP

AUDIENCE = "vitals-alerting"
TENANT = "tenant-bench"
TOKEN_LIFETIME_S = 3600
REMINT_AFTER_S = 60.0
READINGS_WRITE = "readings:write"
CONSENT_ADMIN = "consent:write consent:revoke"


@dataclass
class BenchAuth:
    """The running fake IdP and a cache of minted tokens per scope string."""

    idp: FakeIdP
    _cache: dict[str, tuple[float, str]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """AUTH_* variables that make a service trust the fake IdP."""
        return {
            "AUTH_JWKS_URL": self.idp.jwks_url,
            "AUTH_ISSUER": self.idp.issuer,
            "AUTH_AUDIENCE": self.idp.audience,
        }

    def token(self, scopes: str) -> str:
        """A valid access token for `scopes` in the bench tenant (cached for a minute)."""
        minted_at, token = self._cache.get(scopes, (0.0, ""))
        if time.monotonic() - minted_at > REMINT_AFTER_S:
            now = int(time.time())
            token = self.idp.mint(
                now=now,
                exp=now + TOKEN_LIFETIME_S,
                scope=scopes,
                tenant_id=TENANT,
                sub="bench",
                client_id="bench",
            )
            self._cache[scopes] = (time.monotonic(), token)
        return token

    def headers(self, scopes: str) -> dict[str, str]:
        """Authorization header for `scopes`."""
        return {"Authorization": f"Bearer {self.token(scopes)}"}


@contextmanager
def running_idp() -> Iterator[BenchAuth]:
    """Start the fake IdP on a loopback port; stop it on exit."""
    idp = FakeIdP(audience=AUDIENCE).start()
    try:
        yield BenchAuth(idp)
    finally:
        idp.stop()
