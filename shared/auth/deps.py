"""FastAPI dependency: a bearer token from the Authorization header, with the scopes a route needs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from fastapi import Request

from shared.audit import AuditRecorded
from shared.auth.errors import (
    AuthNotConfiguredError,
    DuplicateAuthorizationError,
    InsufficientScopeError,
    InvalidTokenError,
    MissingTokenError,
    TokenInQueryError,
)
from shared.auth.records import actor_of
from shared.auth.tokens import Principal, TokenValidator
from shared.http import ApiError

log = structlog.get_logger(__name__)

_BEARER = re.compile(r"^Bearer +(\S+) *$", re.IGNORECASE)
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 §2.1 b64token


def require_scopes(*scopes: str) -> Callable[[Request], Awaitable[Principal]]:
    """Build a dependency that yields the caller's Principal when its token holds every scope."""
    needed = frozenset(scopes)

    async def dependency(request: Request) -> Principal:
        principal: Principal | None = None
        try:
            principal = await _authenticate(request)
            if not needed <= principal.scopes:
                raise InsufficientScopeError(
                    "the access token lacks a scope this endpoint needs",
                    headers={"WWW-Authenticate": _scope_challenge(needed)},
                )
        except ApiError as exc:
            await _audit_refusal(request, exc, principal)
            raise
        return principal

    return dependency


async def _authenticate(request: Request) -> Principal:
    """Read the one Authorization header and validate its bearer token."""
    validator: TokenValidator | None = getattr(request.app.state, "token_validator", None)
    if validator is None:
        raise AuthNotConfiguredError("authentication is not configured on this service")
    if request.scope.get("query_string") and "access_token" in request.query_params:
        raise TokenInQueryError(
            "send the access token in the Authorization header, never in the URL",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise DuplicateAuthorizationError(
            "send exactly one Authorization header",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    match = _BEARER.match(values[0]) if values else None
    if match is None:
        raise MissingTokenError(
            "a bearer access token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    token = match.group(1)
    if not _B64TOKEN.match(token):
        raise InvalidTokenError("malformed", "the access token has characters a token cannot have")
    return await validator.validate(token)


def _scope_challenge(needed: frozenset[str]) -> str:
    return f'Bearer error="insufficient_scope", scope="{" ".join(sorted(needed))}"'


def _reason(exc: ApiError) -> str:
    return exc.reason if isinstance(exc, InvalidTokenError) else exc.code


async def _audit_refusal(request: Request, exc: ApiError, principal: Principal | None) -> None:
    """Log and audit a refusal (never the token); a failing sink does not change the answer."""
    reason = _reason(exc)
    route = str(getattr(request.scope.get("route"), "path", "unmatched"))
    sub = principal.sub if principal else None
    log.info("authz_denied", status=exc.status, reason=reason, route=route, sub=sub)
    sink = getattr(request.app.state, "audit_sink", None)
    if sink is None:
        return
    try:
        await sink.record(_denial_record(request, exc, principal, route=route))
        request.state.refusal_audited = True  # RefusalAuditMiddleware need not record it again
    except Exception as err:  # the caller is refused either way; the failure is logged
        log.error("authz_denied_audit_failed", error=type(err).__name__, reason=reason)


def _denial_record(
    request: Request, exc: ApiError, principal: Principal | None, *, route: str
) -> AuditRecorded:
    """The authz.denied audit record of one refusal."""
    return AuditRecorded(
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        service=str(getattr(request.app.state, "service_name", None) or request.app.title),
        actor=actor_of(principal),
        action="authz.denied",
        tenant_id=principal.tenant_id if principal else None,
        outcome="denied",
        reason=_reason(exc)[:500],
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
        details={"method": request.method, "route": route, "status": str(exc.status)},
    )
