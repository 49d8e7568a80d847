"""Composition root of the rules service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.rules.adapters.kafka import KafkaAlertPublisher
from services.rules.adapters.state import InMemoryStateStore
from services.rules.handlers import (
    erase_patient,
    export_patient,
    on_consent_changed,
    on_reading_received,
)
from services.rules.settings import RulesSettings
from shared.auth import build_token_validator
from shared.consent_view import KafkaConsentView
from shared.dsr import export_router
from shared.erasure import erasure_handler
from shared.http import build_app, ops_router
from shared.kafka import KafkaAuditSink
from shared.runtime import KafkaRuntime
from shared.topics import ERASURE, READINGS

SERVICE = "rules"


def create_app(settings: RulesSettings) -> FastAPI:
    """Build the rules app: consume readings.v1, publish alerts.v1."""
    registry = CollectorRegistry()
    runtime = KafkaRuntime(service=SERVICE, settings=settings, registry=registry)
    consent = KafkaConsentView(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        consent_required=settings.consent_required,
        client_id=f"{SERVICE}-consent-view",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    store = InMemoryStateStore()
    publisher = KafkaAlertPublisher(runtime.publisher)
    consent.on_change(partial(on_consent_changed, store=store, publisher=publisher))
    runtime.add_component("consent_view", consent.run, lambda: consent.caught_up)
    runtime.add_consumer(
        READINGS,
        partial(on_reading_received, store=store, publisher=publisher, consent=consent),
        group_id=settings.rules_group_id,
    )
    runtime.add_consumer(
        ERASURE,
        erasure_handler(
            service=SERVICE, erase=partial(erase_patient, store=store), publisher=runtime.publisher
        ),
        group_id=f"{settings.rules_group_id}-erasure",
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
        title="Rules",
        description="Classifies each patient green/yellow/red from readings.v1 and emits alerts.v1.",
        lifespan=lifespan,
        registry=registry,
        max_body_bytes=65_536,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.include_router(ops_router(checks=runtime.checks, registry=registry))
    app.state.token_validator = build_token_validator(settings, auth_http)
    app.state.audit_sink = audit_sink
    app.include_router(
        export_router(
            service=SERVICE,
            collect=partial(export_patient, store=store),
            consent=consent,
            audit=audit_sink,
        )
    )
    return app
