"""Notifier settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    """Settings of the notifier service."""

    port: int = Field(8003, validation_alias="NOTIFIER_PORT", ge=1, le=65535)
    group_id: str = Field("notifier", validation_alias="NOTIFIER_GROUP_ID")
    slack_api_base_url: str = Field("https://slack.com/api", validation_alias="SLACK_API_BASE_URL")
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_channel: str = Field("#care-alerts", validation_alias="SLACK_CHANNEL")
    slack_timeout_s: float = Field(5.0, validation_alias="SLACK_TIMEOUT_S", gt=0)
    dashboard_url: str = Field(
        "http://127.0.0.1:8003/",
        validation_alias="NOTIFIER_DASHBOARD_URL",
        description="Link put in every Slack alert.",
    )
