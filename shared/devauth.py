"""Dev-only identity provider (DEV_AUTH=1): a local signing key, its JWKS route and dev tokens.

Never enabled unless DEV_AUTH is set; `make run` serves the JWKS from the consent service and
`make token` signs with the same key file, so a laptop needs no real identity provider.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.jwk import RSAKey

from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)

JWKS_PATH = "/.well-known/jwks.json"


def load_or_create_dev_key(path: str | Path) -> RSAKey:
    """Load the dev RSA private JWK, creating it (RSA-2048, mode 0600) when absent."""
    target = Path(path)
    if not target.exists():
        _create_key_file(target)
    elif target.stat().st_mode & 0o077:
        target.chmod(0o600)  # a private key readable by others: tighten it
    key = RSAKey.import_key(json.loads(target.read_text()))
    if not key.is_private or key.kid is None:
        raise ValueError(f"{target} is not a private RSA JWK with a kid")
    return key


def _create_key_file(target: Path) -> None:
    """Write a new key to a private temp file and link it into place (first writer wins)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".dev-key-")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(key.as_dict(private=True), out)
        os.link(tmp, target)
        log.info("dev_signing_key_created", path=str(target), kid=key.kid)
    except FileExistsError:
        pass  # another process created it at the same moment; use theirs
    finally:
        os.unlink(tmp)


def dev_jwks_router(settings: ServiceSettings) -> APIRouter:
    """Serve the dev key's public half at /.well-known/jwks.json (DEV_AUTH=1 only)."""
    if not settings.dev_auth:
        raise RuntimeError("dev_jwks_router needs DEV_AUTH=1")
    key = load_or_create_dev_key(settings.dev_auth_key_file)
    jwks = {"keys": [key.as_dict(private=False)]}
    log.warning("dev_auth_enabled", kid=key.kid, issuer=settings.auth_issuer)
    router = APIRouter(tags=["dev-auth"])

    @router.get(JWKS_PATH, summary="Dev-only JWKS (DEV_AUTH=1)", include_in_schema=False)
    async def dev_jwks() -> JSONResponse:
        return JSONResponse(jwks, headers={"Cache-Control": "max-age=60"})

    return router


def issue_dev_token(
    *,
    key: RSAKey,
    issuer: str,
    audience: str,
    scopes: Iterable[str],
    sub: str = "dev-user",
    tenant_id: str = "dev-tenant",
    client_id: str = "dev-cli",
    ttl_s: int = 3600,
) -> str:
    """Sign an RFC 9068 access token (typ at+jwt) with the dev key."""
    now = int(time.time())
    scope = scopes if isinstance(scopes, str) else " ".join(scopes)
    claims = {
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "exp": now + ttl_s,
        "iat": now,
        "nbf": now,
        "jti": uuid.uuid4().hex,
        "client_id": client_id,
        "scope": " ".join(scope.split()),
        "tenant_id": tenant_id,
    }
    header = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=["RS256"])
