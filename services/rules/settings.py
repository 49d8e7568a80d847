"""Rules settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class RulesSettings(ServiceSettings):
    """Settings of the rules service."""

    rules_port: int = Field(8002, ge=1, le=65535)
    rules_group_id: str = "rules"
