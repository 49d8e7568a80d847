"""Ingest settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """Settings of the ingest service (env variables in the README)."""

    ingest_port: int = Field(8001, ge=1, le=65535)
    ingest_max_body_bytes: int = Field(1_048_576, ge=1024)
    ingest_max_future_skew_s: int = Field(
        300,
        ge=0,
        description="Readings stamped further in the future than this are rejected.",
    )
