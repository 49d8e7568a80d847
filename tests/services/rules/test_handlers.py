"""Rules handlers on a real SQLite state store: batches, consent, gaps, erasure, restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.rules.adapters.state_store import SqlStateStore
from services.rules.domain import DEFAULT_RULES_FILE, PatientState, load_rule_set
from services.rules.handlers import (
    RulesEngine,
    check_data_gaps,
    erase_patient,
    on_consent_changed,
    on_readings,
)
from shared.consent_view import ConsentState
from shared.consumer import MessageContext
from shared.db import make_engine, migrate
from shared.events import AlertEvent, AlertKind, ConsentChanged, Purpose, Reading

MIGRATIONS = Path(__file__).parents[3] / "services" / "rules" / "migrations"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RULES = load_rule_set(DEFAULT_RULES_FILE)


def hr(
    value: float, second: int, patient: str = "pt-1", metric: str = "heart_rate", unit: str = "/min"
) -> tuple[Reading, MessageContext]:
    at = T0 + timedelta(seconds=second)
    reading = Reading(
        reading_id=f"r-{patient}-{second}",
        patient_id=patient,
        source="t",
        metric=metric,
        value=value,
        unit=unit,
        code="8867-4",
        measured_at=at,
        received_at=at,
    )
    return reading, MessageContext(topic="readings.v1", partition=3, offset=second, key=b"")


def consent_event(patient: str, active: bool) -> ConsentChanged:
    return ConsentChanged(
        event_id=f"c-{patient}-{active}",
        patient_id=patient,
        tenant_id="t1",
        consent_id="c1",
        purpose=Purpose.MONITORING,
        change="granted" if active else "revoked",
        purpose_active=active,
        changed_at=T0 + timedelta(minutes=10),
    )


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []
        self.fail = False

    async def publish_alerts(self, events: Sequence[AlertEvent]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.events += events


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[object]:
    engine = make_engine(f"sqlite:///{tmp_path}/rules.db")
    await migrate(engine, MIGRATIONS)
    yield engine
    await engine.dispose()


def engine_on(db: object, *granted: str) -> RulesEngine:
    consent = ConsentState(consent_required=True)
    for patient in granted:
        consent.apply(consent_event(patient, True))
    consent.caught_up = True
    store = SqlStateStore(db, encode=PatientState.to_json, decode=PatientState.from_json)  # type: ignore[arg-type]
    return RulesEngine(rules=RULES, store=store, publisher=RecordingPublisher(), consent=consent)


def published(engine: RulesEngine) -> list[AlertEvent]:
    assert isinstance(engine.publisher, RecordingPublisher)
    return engine.publisher.events


async def test_a_sustained_episode_opens_once_and_state_survives_a_restart(db: object) -> None:
    first = engine_on(db, "pt-1")
    assert await on_readings([hr(150, 0), hr(150, 30)], engine=first) == []
    assert published(first) == []  # not sustained yet
    # A new instance (restart, or the partition moved) continues from the database.
    second = engine_on(db, "pt-1")
    await on_readings([hr(150, 60), hr(155, 90)], engine=second)
    assert [e.kind for e in published(second)] == [AlertKind.OPENED]


async def test_one_batch_after_a_restart_continues_stored_patients_and_starts_new_ones(
    db: object,
) -> None:
    first = engine_on(db, "pt-1", "pt-2", "pt-3")
    await on_readings([hr(150, 0), hr(150, 30), hr(150, 0, "pt-2")], engine=first)
    second = engine_on(db, "pt-1", "pt-2", "pt-3")  # states are read for the whole batch at once
    batch = [hr(150, 60), hr(150, 60, "pt-2"), hr(150, 0, "pt-3"), hr(150, 30, "pt-3")]
    await on_readings(batch, engine=second)
    assert [(e.patient_id, e.kind) for e in published(second)] == [("pt-1", AlertKind.OPENED)]
    await on_readings([hr(150, 90, "pt-2"), hr(150, 60, "pt-3")], engine=second)
    opened = sorted(e.patient_id for e in published(second) if e.kind is AlertKind.OPENED)
    assert opened == ["pt-1", "pt-2", "pt-3"]


async def test_a_failed_publish_saves_nothing_so_the_retry_emits_the_same_events(
    db: object,
) -> None:
    engine = engine_on(db, "pt-1")
    batch = [hr(150, 0), hr(150, 30), hr(150, 60)]
    assert isinstance(engine.publisher, RecordingPublisher)
    engine.publisher.fail = True
    with pytest.raises(ConnectionError):
        await on_readings(batch, engine=engine)
    engine.publisher.fail = False
    await on_readings(batch, engine=engine)
    replay = engine_on(db, "pt-1")
    await on_readings(batch, engine=replay)  # redelivered after the commit was lost: no repeat
    assert [e.kind for e in published(engine)] == [AlertKind.OPENED]
    assert published(replay) == []


async def test_unknown_unit_is_rejected_for_the_dead_letter_and_the_rest_proceeds(
    db: object,
) -> None:
    engine = engine_on(db, "pt-1")
    bad = hr(37.0, 5, metric="body_temperature", unit="[degF]")
    rejections = await on_readings([hr(150, 0), bad, hr(150, 30), hr(150, 60)], engine=engine)
    assert [(r.ctx.offset, r.reason) for r in rejections] == [(5, "unit_mismatch")]
    assert [e.kind for e in published(engine)] == [AlertKind.OPENED]


async def test_no_consent_no_evaluation(db: object) -> None:
    engine = engine_on(db)
    await on_readings([hr(150, 0), hr(150, 30), hr(150, 60)], engine=engine)
    assert published(engine) == [] and await engine.store.load("pt-1") is None


async def test_revocation_resolves_open_episodes_and_forgets(db: object) -> None:
    engine = engine_on(db, "pt-1")
    await on_readings([hr(150, 0), hr(150, 30), hr(150, 60)], engine=engine)
    await on_consent_changed(consent_event("pt-1", False), engine=engine)
    opened, resolved = published(engine)
    assert resolved.alert_id == opened.alert_id and resolved.reason == "consent_revoked"
    assert await engine.store.load("pt-1") is None


async def test_silence_during_an_open_episode_raises_a_technical_yellow(db: object) -> None:
    engine = engine_on(db, "pt-1")
    await on_readings([hr(150, 0), hr(150, 30), hr(150, 60)], engine=engine)
    assert await check_data_gaps(engine, now=T0 + timedelta(minutes=5)) == 0
    assert await check_data_gaps(engine, now=T0 + timedelta(hours=1)) == 1
    gap = published(engine)[-1]
    assert gap.kind is AlertKind.OPENED and gap.severity.value == "yellow"
    assert await check_data_gaps(engine, now=T0 + timedelta(hours=2)) == 0  # no repeats


async def test_erasure_forgets_only_that_patient(db: object) -> None:
    engine = engine_on(db, "pt-1", "pt-2")
    await on_readings([hr(90, 0), hr(90, 1, "pt-2")], engine=engine)
    assert await erase_patient("pt-1", engine=engine) == "deleted 1 rule state(s)"
    assert await engine_on(db).store.load("pt-1") is None
    assert await engine_on(db).store.load("pt-2") is not None


async def test_after_a_restart_silent_patients_of_assigned_partitions_are_still_gap_checked(
    db: object,
) -> None:
    before = engine_on(db, "pt-1")
    await on_readings([hr(150, 0), hr(150, 30), hr(150, 60)], engine=before)
    after = engine_on(db, "pt-1")  # restarted: empty cache, the patient sends nothing more
    await after.store.load_partitions({3})
    assert await check_data_gaps(after, now=T0 + timedelta(hours=1)) == 1
