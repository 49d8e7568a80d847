"""Rules settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class RulesSettings(ServiceSettings):
    """Settings of the rules service."""

    port: int = Field(8002, validation_alias="RULES_PORT", ge=1, le=65535)
    group_id: str = Field("rules", validation_alias="RULES_GROUP_ID")
