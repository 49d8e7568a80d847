"""Bearer access tokens (RFC 9068): validation against the IdP's JWKS and a FastAPI dependency."""

from shared.auth.deps import require_scopes
from shared.auth.errors import (
    AuthNotConfiguredError,
    DuplicateAuthorizationError,
    InsufficientScopeError,
    InvalidTokenError,
    JwksUnavailableError,
    MissingTokenError,
    TokenInQueryError,
)
from shared.auth.jwks import ALLOWED_ALGS, JwksCache
from shared.auth.records import actor_of, caller_record
from shared.auth.tokens import Principal, TokenValidator, build_token_validator

__all__ = [
    "ALLOWED_ALGS",
    "AuthNotConfiguredError",
    "DuplicateAuthorizationError",
    "InsufficientScopeError",
    "InvalidTokenError",
    "JwksCache",
    "JwksUnavailableError",
    "MissingTokenError",
    "Principal",
    "TokenInQueryError",
    "TokenValidator",
    "actor_of",
    "build_token_validator",
    "caller_record",
    "require_scopes",
]
