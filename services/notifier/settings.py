"""Notifier settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    """Settings of the notifier service."""

    notifier_port: int = Field(8003, ge=1, le=65535)
    notifier_group_id: str = "notifier"
    slack_api_base_url: str = Field("https://slack.com/api")
    slack_bot_token: SecretStr | None = Field(None)
    slack_channel: str = Field("#care-alerts")
    slack_timeout_s: float = Field(5.0, gt=0)
    notifier_dashboard_url: str = Field(
        "http://127.0.0.1:8003/",
        description="Link put in every Slack alert.",
    )
