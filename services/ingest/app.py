"""Composition root of the ingest service."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from services.ingest.adapters.connections_store import SqlConnectionStore
from services.ingest.adapters.consent import ConsentViewAdapter
from services.ingest.adapters.deferred_pulls import DeferredPullRelay, SqlDeferredPullStore
from services.ingest.adapters.fitbit_api import FitbitApiClient
from services.ingest.adapters.garmin_api import GarminApiClient
from services.ingest.adapters.google_health_api import GoogleHealthApiClient
from services.ingest.adapters.kafka import KafkaReadingPublisher
from services.ingest.adapters.token_cipher import cipher_from
from services.ingest.api import build_router
from services.ingest.connections import Vendor
from services.ingest.connections_api import build_connections_router
from services.ingest.errors import IngestConfigurationError
from services.ingest.fastpath import PATH, ReadingsFastPath
from services.ingest.pulls import VendorPuller, token_exchanger
from services.ingest.settings import IngestSettings
from services.ingest.vendors import google_health
from services.ingest.webhook_support import VendorPipeline, install_database_errors
from services.ingest.webhooks import build_webhook_router
from shared.db import make_engine, migrate
from shared.http import wrap_outermost
from shared.service import ServiceKit
from shared.topics import VENDOR_NOTIFICATIONS

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
        return f"{removed} vendor connection(s), their tokens and deferred pulls deleted"

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
    install_database_errors(app)
    app.state.publisher = KafkaReadingPublisher(kit.runtime.publisher)
    app.state.consent = ConsentViewAdapter(kit.consent)
    app.state.metrics = IngestMetrics(kit.registry)
    app.state.connections = store
    app.state.google_health_public_key = _google_public_key(settings.google_health_public_key_file)
    app.state.pipeline = VendorPipeline(
        settings=settings,
        connections=store,
        publisher=app.state.publisher,
        consent=app.state.consent,
        audit_sink=kit.audit_sink,
        metrics=app.state.metrics,
    )
    _wire_pulls(kit, settings, app.state.pipeline, SqlDeferredPullStore(db))
    readings = build_router()
    app.include_router(readings)
    app.include_router(build_webhook_router())
    app.include_router(build_connections_router())
    route = next(r for r in readings.routes if getattr(r, "path", None) == PATH)
    wrap_outermost(  # answers POST /v1/readings in front of the middleware stack
        app,
        lambda inner: ReadingsFastPath(
            inner, route=route, max_body_bytes=settings.ingest_max_body_bytes, service=SERVICE
        ),
    )
    return app


def _google_public_key(path: str | None) -> bytes | None:
    """Read and check GOOGLE_HEALTH_PUBLIC_KEY_FILE once, at startup: a bad key would otherwise
    fail every webhook call."""
    if not path:
        return None
    name = "GOOGLE_HEALTH_PUBLIC_KEY_FILE"
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise IngestConfigurationError(f"{name}={path} cannot be read: {exc.strerror}") from exc
    try:
        google_health.public_key(pem)
    except ValueError as exc:
        raise IngestConfigurationError(f"{name}={path} is not a usable key: {exc}") from exc
    return pem


def _wire_pulls(
    kit: ServiceKit,
    settings: IngestSettings,
    pipeline: VendorPipeline,
    deferrals: SqlDeferredPullStore,
) -> None:
    """The consumer that pulls vendor data after Fitbit / Google Health / Garmin ping notices."""
    http = httpx.AsyncClient(timeout=settings.vendor_timeout_s)
    kit.close_on_shutdown(http.aclose)
    store = pipeline.connections
    fitbit_secret = settings.fitbit_client_secret
    google_secret = settings.google_health_client_secret
    puller = VendorPuller(
        pipeline=pipeline,
        fitbit=FitbitApiClient(
            http=http,
            client_id=settings.fitbit_client_id,
            client_secret=fitbit_secret.get_secret_value(),
            exchange_tokens=token_exchanger(store, Vendor.FITBIT),
            base_url=settings.fitbit_api_base_url,
            token_url=settings.fitbit_token_url,
        )
        if settings.fitbit_client_id and fitbit_secret
        else None,
        google=GoogleHealthApiClient(
            http=http,
            client_id=settings.google_health_client_id,
            client_secret=google_secret.get_secret_value(),
            exchange_tokens=token_exchanger(store, Vendor.GOOGLE_HEALTH),
            base_url=settings.google_health_api_base_url,
            token_url=settings.google_health_token_url,
        )
        if settings.google_health_client_id and google_secret
        else None,
        garmin=GarminApiClient(http=http, base_url=settings.garmin_api_base_url),
        deferrals=deferrals,
        max_wait_s=settings.vendor_max_retry_after_s,
    )
    kit.runtime.add_consumer(
        VENDOR_NOTIFICATIONS,
        puller.on_vendor_notification,
        group_id=settings.ingest_group_id,
        background=True,
    )
    relay = DeferredPullRelay(
        store=deferrals,
        publisher=kit.runtime.publisher,
        poll_s=settings.ingest_deferred_pull_poll_s,
    )
    kit.runtime.add_component("deferred_pulls", relay.run, lambda: relay.ready)
