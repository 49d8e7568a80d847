"""Consent settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    """Settings of the consent service."""

    port: int = Field(8004, validation_alias="CONSENT_PORT", ge=1, le=65535)
