"""Refusals of the bearer-token layer, rendered by the shared ApiError handler (RFC 6750 §3)."""

from __future__ import annotations

from shared.http import ApiError


class InvalidTokenError(ApiError):
    """The access token is malformed, unverifiable, expired or lacks a required claim."""

    status = 401
    code = "invalid_token"

    def __init__(self, reason: str, message: str = "the access token is invalid") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        self.reason = reason


class MissingTokenError(ApiError):
    """No bearer token in the Authorization header."""

    status = 401
    code = "missing_token"


class TokenInQueryError(ApiError):
    """An access token in the query string, which is never accepted."""

    status = 401
    code = "invalid_request"


class DuplicateAuthorizationError(ApiError):
    """More than one Authorization header."""

    status = 400
    code = "invalid_request"


class InsufficientScopeError(ApiError):
    """A valid token that lacks a scope the endpoint needs."""

    status = 403
    code = "insufficient_scope"


class AuthNotConfiguredError(ApiError):
    """AUTH_JWKS_URL / AUTH_ISSUER / AUTH_AUDIENCE unset: refuse rather than allow."""

    status = 503
    code = "auth_not_configured"


class JwksUnavailableError(ApiError):
    """The identity provider's keys cannot be fetched: fail closed."""

    status = 503
    code = "auth_unavailable"
