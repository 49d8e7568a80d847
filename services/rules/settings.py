"""Rules settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class RulesSettings(ServiceSettings):
    """Settings of the rules service."""

    rules_port: int = Field(8002, ge=1, le=65535)
    rules_group_id: str = "rules"
    rules_file: str | None = Field(
        None, description="YAML rule set; the versioned file shipped with the service if unset."
    )
    rules_database_url: str = Field(
        "sqlite:///.data/rules.db",
        description="Rule state and per-patient thresholds: sqlite:/// or postgresql://.",
    )
    rules_database_schema: str | None = Field(None, description="PostgreSQL schema to use.")
    rules_gap_check_interval_s: float = Field(
        5.0, gt=0, description="How often silent patients with an open episode are checked."
    )
