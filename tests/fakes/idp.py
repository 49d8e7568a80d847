"""A local identity provider fake: a rotatable JWKS on loopback and a minter of any token.

It serves `GET /.well-known/jwks.json` (public halves of the published keys), counts those fetches,
and records every other request it receives, so a test can prove that a `jku`/`x5u` header was not
followed. `fail_next` makes the next N JWKS fetches answer 500. Tokens are assembled by hand, so
any header or claim can be forged: alg=none, HS256 keyed with the RSA public key, embedded jwk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import ThreadedServer

JWKS_PATH = "/.well-known/jwks.json"
DROP = object()  # a claim/header value meaning "leave this one out"


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """A private key the fake can sign with, and the alg its JWK is pinned to."""

    key: RSAKey | ECKey
    alg: str

    @property
    def kid(self) -> str:
        """The key's kid."""
        assert self.key.kid is not None
        return self.key.kid

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK as published."""
        return {**self.key.as_dict(private=False), **extra}

    def sign(self, data: bytes) -> bytes:
        """Sign per RS256 / ES256 (ES256 as raw r||s, RFC 7518 §3.4)."""
        private = self.key.private_key
        if isinstance(self.key, RSAKey):
            return private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = utils.decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def new_key(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    """A fresh RS256 (RSA-2048) or ES256 (P-256) key with a kid, pinned to its alg."""
    params: dict[str, Any] = {"alg": alg, "use": "sig", "kid": kid or uuid.uuid4().hex[:16]}
    key = (
        RSAKey.generate_key(2048, params) if alg == "RS256" else ECKey.generate_key("P-256", params)
    )
    return SigningKey(key, alg)


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """Assemble header.payload.signature from raw parts, with no checks at all."""
    h = b64url(json.dumps({k: v for k, v in header.items() if v is not DROP}).encode())
    p = b64url(json.dumps({k: v for k, v in claims.items() if v is not DROP}).encode())
    return f"{h}.{p}.{b64url(sign(f'{h}.{p}'.encode()))}"


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    """An HMAC-SHA256 signer keyed with `secret` (for algorithm-confusion attacks)."""
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


@dataclass
class FakeIdP:
    """Run with start(); mint() signs with the first published key unless told otherwise."""

    audience: str = "consent-api"
    published: list[SigningKey] = field(default_factory=lambda: [new_key("RS256")])
    fetches: int = 0
    other_requests: list[str] = field(default_factory=list)
    fail_next: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        """Root URL of the fake."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        """Value for AUTH_ISSUER."""
        return f"{self.base_url}/realms/vitals"

    @property
    def jwks_url(self) -> str:
        """Value for AUTH_JWKS_URL."""
        return f"{self.base_url}{JWKS_PATH}"

    def start(self) -> FakeIdP:
        """Serve on a free loopback port in a background thread."""
        self._server = ThreadedServer(
            Starlette(routes=[Route("/{path:path}", self._any, methods=["GET", "POST"])]),
            name="IdP",
            port=self.port,
        )
        self.port = self._server.port
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()

    def publish(self, *keys: SigningKey) -> None:
        """Add keys to the served JWKS."""
        with self._lock:
            self.published.extend(keys)

    def retire(self, kid: str) -> None:
        """Remove a key from the served JWKS."""
        with self._lock:
            self.published = [k for k in self.published if k.kid != kid]

    def claims(self, *, now: int, **overrides: Any) -> dict[str, Any]:
        """Valid RFC 9068 claims plus tenant_id; an override of DROP removes the claim."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": self.audience,
            "exp": now + 300,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "client_id": "app-1",
            "tenant_id": "tenant-a",
            "scope": "consent:read",
        }
        claims.update(overrides)
        return claims

    def mint(
        self,
        *,
        now: int,
        key: SigningKey | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed by `key` (default: first published) with header/claim overrides."""
        key = key or self.published[0]
        full_header = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid, **(header or {})}
        return compact(full_header, self.claims(now=now, **claims), key.sign)

    async def _any(self, request: Request) -> JSONResponse:
        with self._lock:
            if request.url.path != JWKS_PATH or request.method != "GET":
                self.other_requests.append(f"{request.method} {request.url.path}")
                return JSONResponse({"error": "not_found"}, status_code=404)
            self.fetches += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": "unavailable"}, status_code=500)
            keys = [k.public_jwk() for k in self.published]
        return JSONResponse({"keys": keys})
