"""Composition root of the consent service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.consent.adapters.audit_log import SqlAuditLog, signer_from
from services.consent.adapters.store import SqlConsentStore
from services.consent.adapters.tables import outbox
from services.consent.api import build_router
from services.consent.audit_api import build_audit_router
from services.consent.dsr import on_erasure_event
from services.consent.dsr_api import build_dsr_router
from services.consent.settings import ConsentSettings
from shared.auth import build_token_validator
from shared.consumer import MessageContext
from shared.db import make_engine, migrate
from shared.http import build_app, ops_router
from shared.outbox import OutboxRelay
from shared.runtime import KafkaRuntime
from shared.topics import AUDIT, ERASURE

SERVICE = "consent"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ConsentSettings) -> FastAPI:
    """Build the consent app: database, outbox relay, audit trail, token validation, routes."""
    registry = CollectorRegistry()
    runtime = KafkaRuntime(service=SERVICE, settings=settings, registry=registry)
    engine = make_engine(settings.database_url, schema=settings.database_schema)
    store = SqlConsentStore(engine)
    key = settings.audit_signing_key
    signer = signer_from(
        key.get_secret_value() if key else None,
        settings.audit_signing_key_file,
        create=settings.dev_auth,
    )
    audit_log = SqlAuditLog(signer=signer, store=store)
    relay = OutboxRelay(engine=engine, table=outbox, publisher=runtime.publisher)
    http = httpx.AsyncClient(timeout=5.0)
    migrated = asyncio.Event()

    async def on_audit_recorded(record: object, _: MessageContext) -> None:
        await audit_log.record(record)  # type: ignore[arg-type]

    async def checkpoints() -> None:
        while True:
            await asyncio.sleep(settings.audit_checkpoint_interval_s)
            await audit_log.checkpoint(datetime.now(UTC))

    runtime.add_consumer(
        AUDIT, on_audit_recorded, group_id=settings.audit_group_id, background=True
    )
    runtime.add_consumer(
        ERASURE,
        lambda event, ctx: on_erasure_event(
            event, ctx, store=store, publisher=runtime.publisher, now=datetime.now(UTC)
        ),
        group_id=f"{SERVICE}-erasure",
        background=True,
    )
    runtime.add_component("outbox_relay", relay.run, lambda: True)
    runtime.add_component("database", checkpoints, migrated.is_set)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await migrate(engine, MIGRATIONS)
        migrated.set()
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            await http.aclose()
            await engine.dispose()

    app = build_app(
        title="Consent",
        description="LGPD consent records, real-time revocation on consent.v1, signed audit trail.",
        lifespan=lifespan,
        registry=registry,
        max_body_bytes=65_536,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.store = store
    app.state.audit_log = audit_log
    app.state.audit_sink = audit_log
    app.state.relay = relay
    app.state.http = http
    app.state.token_validator = build_token_validator(settings, http)
    app.include_router(ops_router(checks=runtime.checks, registry=registry))
    app.include_router(build_router())
    app.include_router(build_audit_router())
    app.include_router(build_dsr_router())
    if settings.dev_auth:
        from shared.devauth import dev_jwks_router

        app.include_router(dev_jwks_router(settings))
    return app
