"""Composition root of the rules service."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from services.rules.adapters.kafka import KafkaAlertPublisher
from services.rules.adapters.state import InMemoryStateStore
from services.rules.handlers import (
    erase_patient,
    export_patient,
    on_consent_changed,
    on_reading_received,
)
from services.rules.settings import RulesSettings
from shared.service import ServiceKit
from shared.topics import READINGS

SERVICE = "rules"


def create_app(settings: RulesSettings) -> FastAPI:
    """Build the rules app: consume readings.v1, publish alerts.v1."""
    store = InMemoryStateStore()
    kit = ServiceKit(
        service=SERVICE,
        settings=settings,
        group_id=settings.rules_group_id,
        erase=partial(erase_patient, store=store),
    )
    publisher = KafkaAlertPublisher(kit.runtime.publisher)
    kit.consent.on_change(partial(on_consent_changed, store=store, publisher=publisher))
    kit.runtime.add_consumer(
        READINGS,
        partial(on_reading_received, store=store, publisher=publisher, consent=kit.consent),
        group_id=settings.rules_group_id,
    )
    return kit.build_app(
        title="Rules",
        description="Classifies each patient green/yellow/red from readings.v1 and emits alerts.v1.",
        max_body_bytes=65_536,
        export=partial(export_patient, store=store),
    )
