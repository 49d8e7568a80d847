"""Composition root of the rules service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.rules.adapters.kafka import KafkaAlertPublisher
from services.rules.adapters.state import InMemoryStateStore
from services.rules.handlers import on_reading_received
from services.rules.settings import RulesSettings
from shared.http import build_app, ops_router
from shared.runtime import KafkaRuntime
from shared.topics import READINGS

SERVICE = "rules"


def create_app(settings: RulesSettings) -> FastAPI:
    """Build the rules app: consume readings.v1, publish alerts.v1."""
    registry = CollectorRegistry()
    runtime = KafkaRuntime(service=SERVICE, settings=settings, registry=registry)
    handler = partial(
        on_reading_received,
        store=InMemoryStateStore(),
        publisher=KafkaAlertPublisher(runtime.publisher),
    )
    runtime.add_consumer(READINGS, handler, group_id=settings.group_id)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

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
    return app
