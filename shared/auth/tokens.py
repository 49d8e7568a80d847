"""RFC 9068 access-token validation: allowed algorithms, typ, signature, then every claim."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, InvalidKeyIdError
from joserfc.jwk import KeySet
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from shared.auth.errors import InvalidTokenError
from shared.auth.jwks import ALLOWED_ALGS, JwksCache
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
MAX_TOKEN_CHARS = 8192
# Headers that would make a verifier trust key material or URLs chosen by the token's author.
FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "crit", "b64"})
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_KID = re.compile(r"^[\x21-\x7e]{1,128}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_REQUIRED = ("exp", "iat", "sub", "jti", "client_id", "tenant_id")


@dataclass(frozen=True)
class Principal:
    """The validated caller of a request; tenant_id scopes every patient lookup."""

    sub: str
    client_id: str
    tenant_id: str
    scopes: frozenset[str]
    jti: str
    issuer: str


VERIFIED_CACHE_SIZE = 10_000
VERIFIED_CACHE_TTL_S = 60.0


class TokenValidator:
    """Validate RFC 9068 access tokens against the identity provider's keys."""

    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        leeway_s: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwks = jwks
        options: dict[str, ClaimsOption] = {name: {"essential": True} for name in _REQUIRED}
        options["iss"] = {"essential": True, "value": issuer}  # exact match (RFC 9068 §4)
        options["aud"] = {"essential": True, "value": audience}  # equal to, or a list holding, ours
        self._claims = JWTClaimsRegistry(now=lambda: int(clock()), leeway=leeway_s, **options)
        self._clock = clock
        self._leeway_s = leeway_s
        # Verified tokens, by their exact text: a client reusing its token skips the signature
        # check until min(exp + leeway, verified + VERIFIED_CACHE_TTL_S). The TTL bounds how long
        # a key removed from the JWKS keeps working for tokens already seen.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def cached(self, raw: str) -> Principal | None:
        """The principal of a token already verified and still within its cache window, else
        None (then `validate` decides). Lets a hot path skip an await for a reused token."""
        cached = self._verified.get(raw)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        return None

    async def validate(self, raw: str) -> Principal:
        """Return the token's principal; raise InvalidTokenError, or JwksUnavailableError."""
        cached = self._verified.get(raw)
        if cached is not None:
            if self._clock() < cached[1]:
                return cached[0]
            del self._verified[raw]
        principal, exp = await self._verify(raw)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))  # oldest first (insertion order)
        self._verified[raw] = (
            principal,
            min(exp + self._leeway_s, self._clock() + VERIFIED_CACHE_TTL_S),
        )
        return principal

    async def _verify(self, raw: str) -> tuple[Principal, float]:
        """Check signature and claims; return the principal and the token's exp."""
        header = _screen(raw)
        try:
            token = _decode(raw, await self._jwks.get())
        except InvalidKeyIdError:
            kid = header.get("kid")
            if kid is None:  # nothing to look for: no refresh for kid-less tokens
                raise InvalidTokenError("unknown_key") from None
            try:
                token = _decode(raw, await self._jwks.refresh_for(kid))
            except InvalidKeyIdError:
                raise InvalidTokenError("unknown_key") from None
        try:
            self._claims.validate(token.claims)
        except ExpiredTokenError:
            raise InvalidTokenError("expired", "the access token has expired") from None
        except ClaimError as exc:
            message = f"the access token has a {exc.error.replace('_', ' ')}: {exc.claim}"
            raise InvalidTokenError(f"{exc.error}:{exc.claim}", message) from None
        return _principal(token.claims), float(token.claims["exp"])


def _screen(raw: str) -> dict[str, Any]:
    """Cheap checks before any key lookup: size, shape, header parameters, alg, typ and kid."""
    if len(raw) > MAX_TOKEN_CHARS:
        raise InvalidTokenError("too_large", "the access token is too large")
    if not _COMPACT_JWS.match(raw):
        raise InvalidTokenError("malformed", "the access token is not a signed compact JWT")
    segment = raw.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:
        raise InvalidTokenError("malformed", "the access token header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed", "the access token header is not a JSON object")
    if FORBIDDEN_HEADERS & header.keys():
        raise InvalidTokenError("forbidden_header")
    if header.get("alg") not in ALLOWED_ALGS:
        raise InvalidTokenError("alg_not_allowed")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise InvalidTokenError("wrong_typ", "the token is not an access token (typ at+jwt)")
    kid = header.get("kid")
    if kid is not None and not (isinstance(kid, str) and _KID.match(kid)):
        raise InvalidTokenError("bad_kid")
    return header


def _decode(raw: str, keys: KeySet) -> jwt.Token:
    """Verify the signature; an unknown kid propagates (the refresh signal)."""
    try:
        return jwt.decode(raw, keys, algorithms=list(ALLOWED_ALGS))
    except InvalidKeyIdError:
        raise
    except Exception as exc:  # any library failure on attacker input is a 401, never a 500
        raise InvalidTokenError(str(getattr(exc, "error", "") or "bad_token")) from None


def _principal(claims: dict[str, Any]) -> Principal:
    """Build the principal, type-checking claims the registry checks only for presence."""
    values = {name: claims.get(name) for name in ("sub", "client_id", "jti", "tenant_id", "iss")}
    for name, value in values.items():
        if not isinstance(value, str) or not 0 < len(value) <= 256:
            raise InvalidTokenError(f"invalid_claim:{name}")
    if not _TENANT.match(str(values["tenant_id"])):
        raise InvalidTokenError("invalid_claim:tenant_id")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidTokenError("invalid_claim:scope")
    return Principal(
        sub=str(values["sub"]),
        client_id=str(values["client_id"]),
        tenant_id=str(values["tenant_id"]),
        scopes=frozenset(scope.split()),
        jti=str(values["jti"]),
        issuer=str(values["iss"]),
    )


def build_token_validator(
    settings: ServiceSettings, http_client: httpx.AsyncClient
) -> TokenValidator | None:
    """Build the validator from the AUTH_* settings; None when any of them is unset."""
    if not (settings.auth_jwks_url and settings.auth_issuer and settings.auth_audience):
        log.warning("auth_not_configured")
        return None
    jwks = JwksCache(
        url=settings.auth_jwks_url,
        http=http_client,
        ttl_s=settings.auth_jwks_cache_ttl_s,
        cooldown_s=settings.auth_jwks_refresh_cooldown_s,
    )
    return TokenValidator(
        jwks,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        leeway_s=settings.auth_leeway_s,
    )
