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
    kafka_publish_timeout_s: float = Field(5.0, gt=0, description="Max wait for a broker ack.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    log_redaction_key: SecretStr | None = Field(
        None,
        description="Key for the keyed hash that replaces patient ids in logs; random per process if unset.",
    )
    public_base_url: str = Field("", description="External base URL of this service (links).")
