"""Composition root of the ingest service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from services.ingest.adapters.connections_store import SqlConnectionStore
from services.ingest.adapters.consent import ConsentViewAdapter
from services.ingest.adapters.kafka import KafkaReadingPublisher
from services.ingest.adapters.token_cipher import cipher_from
from services.ingest.api import build_router
from services.ingest.connections_api import build_connections_router
from services.ingest.settings import IngestSettings
from shared.db import make_engine, migrate
from shared.service import ServiceKit

SERVICE = "ingest"
MIGRATIONS = Path(__file__).parent / "migrations"


class IngestMetrics:
    """Ingest counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "ingest_readings_accepted", "Readings acknowledged by the broker", registry=registry
        )
        self.withheld = Counter(
            "ingest_readings_withheld",
            "Readings not published: no active monitoring consent, or another tenant's patient",
            registry=registry,
        )
        self.vendor_samples = Counter(
            "ingest_vendor_samples",
            "Vendor samples by outcome (published, duplicate, withheld, unknown_user, "
            "inactive_connection, invalid)",
            ["vendor", "outcome"],
            registry=registry,
        )
        self.webhook_rejected = Counter(
            "ingest_webhook_rejected",
            "Webhook calls refused (bad signature, client id, body)",
            ["vendor", "reason"],
            registry=registry,
        )


def create_app(settings: IngestSettings) -> FastAPI:
    """Build the ingest app: Kafka publisher, consent view, connections database, routes."""
    db = make_engine(settings.ingest_database_url, schema=settings.ingest_database_schema)
    keys = settings.ingest_token_keys.get_secret_value() if settings.ingest_token_keys else None
    store = SqlConnectionStore(db, cipher_from(keys, settings.ingest_token_key_file))

    async def erase(patient_id: str) -> str:
        removed = await store.delete_patient(patient_id)
        return f"{removed} vendor connection(s) and their tokens deleted"

    async def export(patient_id: str) -> dict[str, object]:
        found = await store.list_for_patient(patient_id)
        return {
            "connections": [
                {"vendor": c.vendor.value, "status": c.status.value, "created_at": c.created_at}
                for c in found
            ]
        }

    kit = ServiceKit(service=SERVICE, settings=settings, group_id=SERVICE, erase=erase)

    async def startup() -> None:
        await migrate(db, MIGRATIONS)

    kit.on_startup(startup)
    kit.close_on_shutdown(db.dispose)
    app = kit.build_app(
        title="Ingest",
        description="Receives wearable readings, normalizes them and publishes them on readings.v1.",
        max_body_bytes=settings.ingest_max_body_bytes,
        export=export,
    )
    app.state.publisher = KafkaReadingPublisher(kit.runtime.publisher)
    app.state.consent = ConsentViewAdapter(kit.consent)
    app.state.metrics = IngestMetrics(kit.registry)
    app.state.connections = store
    app.include_router(build_router())
    app.include_router(build_connections_router())
    return app
