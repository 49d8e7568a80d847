"""Ingest settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """Settings of the ingest service (env variables in the README)."""

    ingest_port: int = Field(8001, ge=1, le=65535)
    ingest_max_body_bytes: int = Field(
        4_194_304, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    ingest_max_future_skew_s: int = Field(
        300,
        ge=0,
        description="Readings stamped further in the future than this are rejected.",
    )
    ingest_group_id: str = "ingest"
    ingest_webhook_publish_timeout_s: float = Field(
        2.0,
        gt=0,
        le=30,
        description="Webhook routes answer 503 + Retry-After when the broker has not acknowledged "
        "within this long (Fitbit allows 5 s for the whole answer).",
    )
    ingest_database_url: str = Field(
        "sqlite:///.data/ingest.db",
        description="Vendor connections: sqlite:/// or postgresql://.",
    )
    ingest_database_schema: str | None = Field(None, description="PostgreSQL schema to use.")
    ingest_token_keys: SecretStr | None = Field(
        None,
        description="Fernet keys (comma-separated, newest first) encrypting vendor OAuth tokens.",
    )
    ingest_token_key_file: str | None = Field(
        None, description="Dev only: file holding a Fernet key, created if missing."
    )
    # Fitbit Web API (legacy subscriptions)
    fitbit_client_id: str = Field("", description="Fitbit app client id.")
    fitbit_client_secret: SecretStr | None = Field(
        None, description="Fitbit client secret: signs X-Fitbit-Signature and refreshes tokens."
    )
    fitbit_verification_code: SecretStr | None = Field(
        None, description="Subscriber verification code shown on dev.fitbit.com."
    )
    fitbit_api_base_url: str = Field("https://api.fitbit.com")
    fitbit_token_url: str = Field("https://api.fitbit.com/oauth2/token")
    # Google Health API (Fitbit's successor)
    google_health_client_id: str = Field("")
    google_health_client_secret: SecretStr | None = Field(None)
    google_health_webhook_secret: SecretStr | None = Field(
        None, description="Shared secret Google sends in Authorization on webhook calls."
    )
    google_health_public_key_file: str | None = Field(
        None, description="PEM of Google's ECDSA P-256 key; signatures are checked when set."
    )
    google_health_api_base_url: str = Field("https://health.googleapis.com")
    google_health_token_url: str = Field("https://oauth2.googleapis.com/token")
    # Garmin Health API
    garmin_client_id: SecretStr | None = Field(
        None, description="Consumer key Garmin sends in the garmin-client-id header."
    )
    garmin_api_base_url: str = Field(
        "https://apis.garmin.com", description="Only ping callbackURLs on this origin are fetched."
    )
    vendor_timeout_s: float = Field(10.0, gt=0, description="Timeout of vendor API calls.")
    vendor_max_retry_after_s: float = Field(
        3600.0,
        gt=0,
        description="Longest wait honoured from a vendor's Retry-After / Fitbit-Rate-Limit-Reset "
        "before a rate-limited pull is tried again.",
    )
    ingest_deferred_pull_poll_s: float = Field(
        1.0, gt=0, le=60, description="How often rate-limited pulls are checked for being due."
    )
