"""Notifier settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    """Settings of the notifier service; a provider is used only when its credentials are set."""

    notifier_port: int = Field(8003, ge=1, le=65535)
    notifier_group_id: str = "notifier"
    notifier_database_url: str = Field(
        "sqlite:///.data/notifier.db",
        description="Alerts, deliveries, timers and contacts: sqlite:/// or postgresql://.",
    )
    notifier_database_schema: str | None = Field(None, description="PostgreSQL schema to use.")
    notifier_sqlite_inline: bool = Field(
        True,
        description="SQLite only: run database calls on the event loop's thread (no worker "
        "thread hand-off per call); false: aiosqlite's worker thread.",
    )
    notifier_routing_file: str | None = Field(
        None, description="Routing YAML (agents, severities, policies); the shipped one if unset."
    )
    notifier_dashboard_url: str = Field(
        "http://127.0.0.1:8003/", description="Link put in every Slack alert."
    )
    notifier_ops_slack_channel: str | None = Field(
        None, description="Where delivery failures are reported; SLACK_CHANNEL if unset."
    )
    # Delivery worker.
    notifier_retry_base_s: float = Field(1.0, gt=0, description="First retry delay.")
    notifier_retry_cap_s: float = Field(300.0, gt=0, description="Longest retry delay.")
    notifier_max_attempts: int = Field(
        5, ge=1, le=50, description="Tries per channel before falling over to the next one."
    )
    notifier_rate_limit_max_wait_s: float = Field(
        3600.0,
        gt=0,
        description="A provider's rate limit (429 + Retry-After) uses up no attempt for this "
        "long after the send was queued; later ones count toward NOTIFIER_MAX_ATTEMPTS.",
    )
    notifier_send_concurrency: int = Field(
        128,
        ge=1,
        le=1000,
        description="Sends in flight (each holds its slot until its outcome is committed); also "
        "the HTTP connection pool size.",
    )
    notifier_claim_ttl_s: float = Field(
        30.0, gt=0, description="A send claimed longer than this is retried (crashed instance)."
    )
    notifier_poll_s: float = Field(
        1.0, gt=0, description="Safety-net poll of deliveries and timers (commits wake at once)."
    )
    # Slack.
    slack_api_base_url: str = Field("https://slack.com/api")
    slack_bot_token: SecretStr | None = Field(None)
    slack_channel: str = Field("#care-alerts", description="Default and operational channel.")
    slack_signing_secret: SecretStr | None = Field(
        None, description="Verifies POST /v1/slack/interactions; unset: the endpoint answers 503."
    )
    slack_channel_rate_per_s: float = Field(1.0, gt=0, description="Messages/s per channel.")
    slack_channel_burst: int = Field(
        1, ge=1, description="Messages a quiet channel may send at once (1: strictly ≤ 1 msg/s)."
    )
    slack_timeout_s: float = Field(5.0, gt=0)
    # Twilio (SMS, WhatsApp).
    twilio_account_sid: str | None = Field(None)
    twilio_auth_token: SecretStr | None = Field(None)
    twilio_from: str | None = Field(None, description="Sender number (E.164).")
    twilio_api_base_url: str = Field("https://api.twilio.com")
    # Firebase Cloud Messaging (push).
    fcm_project_id: str | None = Field(None)
    fcm_credentials_file: str | None = Field(None, description="Service-account JSON key file.")
    fcm_api_base_url: str = Field("https://fcm.googleapis.com")
    provider_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of Twilio and FCM.")

    @property
    def ops_channel(self) -> str:
        """The Slack channel that hears about the notifier's own delivery failures."""
        return self.notifier_ops_slack_channel or self.slack_channel
