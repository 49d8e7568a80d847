"""Consent settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    """Settings of the consent service."""

    consent_port: int = Field(8004, ge=1, le=65535)
    database_url: str = Field(
        "sqlite:///.data/consent.db",
        description="SQLAlchemy URL; sqlite:/// or postgresql:// (async drivers are chosen).",
    )
    database_schema: str | None = Field(None)
    audit_signing_key: SecretStr | None = Field(
        None,
        description="Ed25519 private key seed, 32 bytes base64 (or use AUDIT_SIGNING_KEY_FILE).",
    )
    audit_signing_key_file: str | None = Field(None)
    audit_checkpoint_interval_s: float = Field(60.0, gt=0)
    audit_group_id: str = Field("consent-audit")
    export_sources: str = Field(
        "ingest=http://127.0.0.1:8001,rules=http://127.0.0.1:8002,notifier=http://127.0.0.1:8003",
        description="service=base URL pairs asked for their part of a patient export.",
    )
    erasure_services: str = Field(
        "ingest,rules,notifier,consent",
        description="Services that must confirm an erasure before it is complete.",
    )

    def export_sources_map(self) -> dict[str, str]:
        """EXPORT_SOURCES as a dict."""
        pairs = (p.split("=", 1) for p in self.export_sources.split(",") if "=" in p)
        return {name.strip(): url.strip() for name, url in pairs}

    def erasure_services_list(self) -> list[str]:
        """ERASURE_SERVICES as a list."""
        return [s.strip() for s in self.erasure_services.split(",") if s.strip()]
