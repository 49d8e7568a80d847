"""Composition root of the rules service."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.rules.adapters.kafka import KafkaAlertPublisher
from services.rules.adapters.state_store import SqlStateStore
from services.rules.adapters.tables import outbox
from services.rules.adapters.thresholds_store import SqlThresholdsStore
from services.rules.api import build_router
from services.rules.domain import DEFAULT_RULES_FILE, PatientState, load_rule_set
from services.rules.handlers import (
    RulesEngine,
    check_data_gaps,
    erase_patient,
    export_patient,
    on_consent_changed,
    on_readings,
)
from services.rules.settings import RulesSettings
from services.rules.thresholds import load_all, on_thresholds_changed
from shared.db import make_engine, migrate
from shared.outbox import OutboxRelay
from shared.service import ServiceKit
from shared.topic_view import TopicFollower
from shared.topics import READINGS, THRESHOLDS

SERVICE = "rules"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: RulesSettings) -> FastAPI:
    """Build the rules app; a bad rule file raises RuleSetError naming the rule and field."""
    rules = load_rule_set(settings.rules_file or DEFAULT_RULES_FILE)
    # SQLite calls on the loop's thread: rules' write transactions await nothing but the database.
    db = make_engine(
        settings.rules_database_url, schema=settings.rules_database_schema, sqlite_inline=True
    )
    store = SqlStateStore(db, encode=PatientState.to_json, decode=PatientState.from_json)

    async def erase(patient_id: str) -> str:
        return await erase_patient(patient_id, engine=engine)

    kit = ServiceKit(
        service=SERVICE, settings=settings, group_id=settings.rules_group_id, erase=erase
    )
    engine = RulesEngine(
        rules=rules,
        store=store,
        publisher=KafkaAlertPublisher(kit.runtime.publisher),
        consent=kit.consent,
    )
    thresholds_store = SqlThresholdsStore(db)
    _wire(kit, engine, settings, db=db, thresholds_store=thresholds_store, store=store)
    app = kit.build_app(
        title="Rules",
        description="Classifies each patient green/yellow/red from readings.v1 and emits alerts.v1.",
        max_body_bytes=65_536,
        export=partial(export_patient, engine=engine),
    )
    app.state.engine = engine
    app.state.thresholds_store = thresholds_store
    app.include_router(build_router())
    return app


def _wire(
    kit: ServiceKit,
    engine: RulesEngine,
    settings: RulesSettings,
    *,
    db: AsyncEngine,
    thresholds_store: SqlThresholdsStore,
    store: SqlStateStore[PatientState],
) -> None:
    """Consumers, background components, startup and shutdown steps."""
    relay = OutboxRelay(engine=db, table=outbox, publisher=kit.runtime.publisher)
    follower = TopicFollower(
        THRESHOLDS,
        partial(on_thresholds_changed, engine=engine),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{SERVICE}-thresholds",
        fetch_max_wait_ms=settings.kafka_background_fetch_max_wait_ms,
    )

    async def gaps() -> None:
        while True:
            await asyncio.sleep(settings.rules_gap_check_interval_s)
            await check_data_gaps(engine, now=datetime.now(UTC))

    async def startup() -> None:
        await migrate(db, MIGRATIONS)
        await load_all(engine, thresholds_store)

    kit.on_startup(startup)
    kit.close_on_shutdown(db.dispose)
    kit.consent.on_change(partial(on_consent_changed, engine=engine))
    kit.runtime.add_component("thresholds_view", follower.run, lambda: follower.caught_up)
    kit.runtime.add_component("outbox_relay", relay.run, lambda: True)
    kit.runtime.add_component("gap_checker", gaps, lambda: True)
    kit.runtime.add_batch_consumer(
        READINGS,
        partial(on_readings, engine=engine),
        group_id=settings.rules_group_id,
        on_revoked=store.drop_partitions,
        on_assigned=store.load_partitions,
    )
