"""Settings shared by every service; each service extends it with its own frozen class."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Environment-driven settings common to all services (no module-level singleton)."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=False, populate_by_name=True
    )

    bind_host: str = Field("127.0.0.1", description="Interface the HTTP server binds to.")
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_create_topics: bool = Field(True, description="Create missing topics at startup.")
    kafka_session_timeout_ms: int = Field(10_000, ge=1_000)
    kafka_heartbeat_interval_ms: int = Field(3_000, ge=100)
    kafka_fetch_max_wait_ms: int = Field(
        500, ge=1, description="Longest a fetch waits for data (lower it for the embedded broker)."
    )
    kafka_background_fetch_max_wait_ms: int = Field(
        500,
        ge=1,
        description="Fetch wait of consumers nobody waits on (erasure, vendor pull notices, audit,"
        " thresholds): an idle consumer fetches 1000/wait times a second.",
    )
    kafka_publish_timeout_s: float = Field(5.0, gt=0, description="Max wait for a broker ack.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    log_redaction_key: SecretStr | None = Field(
        None,
        description="Key for the keyed hash that replaces patient ids in logs; random per process if unset.",
    )
    public_base_url: str = Field("", description="External base URL of this service (links).")
    consent_required: bool = Field(
        True, description="No active consent for the purpose means no processing (fail closed)."
    )
    # Access tokens (RFC 9068). Empty values mean "not configured": protected endpoints answer 503.
    auth_jwks_url: str = Field("", description="JWKS URL of the identity provider.")
    auth_issuer: str = Field("", description="Exact `iss` of access tokens.")
    auth_audience: str = Field("", description="This service's identifier; `aud` must contain it.")
    auth_leeway_s: int = Field(30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat.")
    auth_jwks_cache_ttl_s: int = Field(300, ge=1, description="How long a fetched JWKS is used.")
    auth_jwks_refresh_cooldown_s: float = Field(
        30, ge=0, description="Minimum interval between JWKS fetches (unknown kid, failures)."
    )
    dev_auth: bool = Field(
        False,
        description="Dev only: serve a local JWKS and sign dev tokens (make run, make token).",
    )
    dev_auth_key_file: str = Field(
        ".dev/dev-signing-key.json", description="Dev only: RSA private JWK used by DEV_AUTH."
    )
