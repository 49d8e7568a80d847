"""What ingest, rules and notifier compose alike: Kafka runtime, consent view, erasure consumer,
token validation, audit sink, and the ops and export routes, under one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.auth import build_token_validator
from shared.consent_view import KafkaConsentView
from shared.dsr import Collector, export_router
from shared.erasure import Eraser, erasure_handler
from shared.http import build_app, ops_router
from shared.kafka import KafkaAuditSink
from shared.runtime import KafkaRuntime
from shared.settings import ServiceSettings
from shared.topics import ERASURE


class ServiceKit:
    """The shared parts of a Kafka-backed service; the service adds its own consumers and routes."""

    def __init__(
        self, *, service: str, settings: ServiceSettings, group_id: str, erase: Eraser
    ) -> None:
        self.service = service
        self.settings = settings
        self.registry = CollectorRegistry()
        self.runtime = KafkaRuntime(service=service, settings=settings, registry=self.registry)
        self.consent = KafkaConsentView(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            consent_required=settings.consent_required,
            client_id=f"{service}-consent-view",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        )
        self.runtime.add_component("consent_view", self.consent.run, lambda: self.consent.caught_up)
        self.runtime.add_consumer(
            ERASURE,
            erasure_handler(service=service, erase=erase, publisher=self.runtime.publisher),
            group_id=f"{group_id}-erasure",
            background=True,
        )
        self.audit_sink = KafkaAuditSink(self.runtime.publisher)
        self._auth_http = httpx.AsyncClient(timeout=5.0)
        self._closers: list[Callable[[], Awaitable[None]]] = [self._auth_http.aclose]
        self._startup: list[Callable[[], Awaitable[None]]] = []

    def on_startup(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` before the Kafka clients start (e.g. database migrations); failure aborts."""
        self._startup.append(step)

    def close_on_shutdown(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` after the Kafka clients stopped (e.g. an HTTP client's aclose)."""
        self._closers.append(closer)

    def build_app(
        self, *, title: str, description: str, max_body_bytes: int, export: Collector
    ) -> FastAPI:
        """Create the FastAPI app with the lifespan, ops routes, auth and the export route."""

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            for step in self._startup:
                await step()
            await self.runtime.start()
            try:
                yield
            finally:
                await self.runtime.stop()
                for close in reversed(self._closers):
                    await close()

        app = build_app(
            title=title,
            description=description,
            lifespan=lifespan,
            registry=self.registry,
            max_body_bytes=max_body_bytes,
        )
        app.state.settings = self.settings
        app.state.runtime = self.runtime
        app.state.service_name = self.service
        app.state.token_validator = build_token_validator(self.settings, self._auth_http)
        app.state.audit_sink = self.audit_sink
        app.include_router(ops_router(checks=self.runtime.checks, registry=self.registry))
        app.include_router(
            export_router(
                service=self.service, collect=export, consent=self.consent, audit=self.audit_sink
            )
        )
        return app
