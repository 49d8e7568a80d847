"""Composition root of the ingest service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from services.ingest.adapters.consent import ConsentViewAdapter
from services.ingest.adapters.kafka import KafkaReadingPublisher
from services.ingest.api import build_router
from services.ingest.handlers import erase_patient, export_patient
from services.ingest.settings import IngestSettings
from shared.auth import build_token_validator
from shared.consent_view import KafkaConsentView
from shared.dsr import export_router
from shared.erasure import erasure_handler
from shared.http import build_app, ops_router
from shared.kafka import KafkaAuditSink
from shared.runtime import KafkaRuntime
from shared.topics import ERASURE

SERVICE = "ingest"


class IngestMetrics:
    """Ingest counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "ingest_readings_accepted", "Readings acknowledged by the broker", registry=registry
        )
        self.withheld = Counter(
            "ingest_readings_withheld",
            "Readings not published: no active monitoring consent",
            registry=registry,
        )


def create_app(settings: IngestSettings) -> FastAPI:
    """Build the ingest app: Kafka publisher, consent view, routes."""
    registry = CollectorRegistry()
    runtime = KafkaRuntime(service=SERVICE, settings=settings, registry=registry)
    consent = KafkaConsentView(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        consent_required=settings.consent_required,
        client_id=f"{SERVICE}-consent-view",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    runtime.add_component("consent_view", consent.run, lambda: consent.caught_up)
    runtime.add_consumer(
        ERASURE,
        erasure_handler(service=SERVICE, erase=erase_patient, publisher=runtime.publisher),
        group_id=f"{SERVICE}-erasure",
    )

    auth_http = httpx.AsyncClient(timeout=5.0)
    audit_sink = KafkaAuditSink(runtime.publisher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            await auth_http.aclose()

    app = build_app(
        title="Ingest",
        description="Receives wearable readings, normalizes them and publishes them on readings.v1.",
        lifespan=lifespan,
        registry=registry,
        max_body_bytes=settings.ingest_max_body_bytes,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.publisher = KafkaReadingPublisher(runtime.publisher)
    app.state.consent = ConsentViewAdapter(consent)
    app.state.metrics = IngestMetrics(registry)
    app.include_router(ops_router(checks=runtime.checks, registry=registry))
    app.state.token_validator = build_token_validator(settings, auth_http)
    app.state.audit_sink = audit_sink
    app.include_router(
        export_router(service=SERVICE, collect=export_patient, consent=consent, audit=audit_sink)
    )
    app.include_router(build_router())
    return app
