"""Composition root of the consent service.

Walking skeleton: the service runs, owns the consent.v1 producer and answers the ops endpoints.
Consent records, revocation, token validation and the audit trail come with the consent issue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.consent.settings import ConsentSettings
from shared.http import build_app, ops_router
from shared.runtime import KafkaRuntime

SERVICE = "consent"


def create_app(settings: ConsentSettings) -> FastAPI:
    """Build the consent app."""
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
        title="Consent",
        description="LGPD consent records and their changes on consent.v1.",
        lifespan=lifespan,
        registry=registry,
        max_body_bytes=65_536,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.include_router(ops_router(checks=runtime.checks, registry=registry))
    return app
