"""Ingest settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """Settings of the ingest service (env variables in the README)."""

    port: int = Field(8001, validation_alias="INGEST_PORT", ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, validation_alias="INGEST_MAX_BODY_BYTES", ge=1024)
    max_future_skew_s: int = Field(
        300,
        validation_alias="INGEST_MAX_FUTURE_SKEW_S",
        ge=0,
        description="Readings stamped further in the future than this are rejected.",
    )
