"""Composition root of the ingest service."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from services.ingest.adapters.consent import ConsentViewAdapter
from services.ingest.adapters.kafka import KafkaReadingPublisher
from services.ingest.api import build_router
from services.ingest.handlers import erase_patient, export_patient
from services.ingest.settings import IngestSettings
from shared.service import ServiceKit

SERVICE = "ingest"


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


def create_app(settings: IngestSettings) -> FastAPI:
    """Build the ingest app: Kafka publisher, consent view, routes."""
    kit = ServiceKit(service=SERVICE, settings=settings, group_id=SERVICE, erase=erase_patient)
    app = kit.build_app(
        title="Ingest",
        description="Receives wearable readings, normalizes them and publishes them on readings.v1.",
        max_body_bytes=settings.ingest_max_body_bytes,
        export=export_patient,
    )
    app.state.publisher = KafkaReadingPublisher(kit.runtime.publisher)
    app.state.consent = ConsentViewAdapter(kit.consent)
    app.state.metrics = IngestMetrics(kit.registry)
    app.include_router(build_router())
    return app
