"""Composition root of the ingest service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from services.ingest.adapters.consent import AllowAllConsentView
from services.ingest.adapters.kafka import KafkaReadingPublisher
from services.ingest.api import build_router
from services.ingest.settings import IngestSettings
from shared.http import build_app, ops_router
from shared.runtime import KafkaRuntime

SERVICE = "ingest"


class IngestMetrics:
    """Ingest counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "ingest_readings_accepted", "Readings acknowledged by the broker", registry=registry
        )


def create_app(settings: IngestSettings) -> FastAPI:
    """Build the ingest app: Kafka publisher, consent view, routes."""
    registry = CollectorRegistry()
    runtime = KafkaRuntime(service=SERVICE, settings=settings, registry=registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = build_app(
        title="Ingest",
        description="Receives wearable readings, normalizes them and publishes them on readings.v1.",
        lifespan=lifespan,
        registry=registry,
        max_body_bytes=settings.max_body_bytes,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.publisher = KafkaReadingPublisher(runtime.publisher)
    app.state.consent = AllowAllConsentView()
    app.state.metrics = IngestMetrics(registry)
    app.include_router(ops_router(checks=runtime.checks, registry=registry))
    app.include_router(build_router())
    return app
