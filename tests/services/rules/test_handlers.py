"""Rules handlers: transitions published before state is saved; consent gates and closes episodes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from services.rules.adapters.state import InMemoryStateStore
from services.rules.handlers import erase_patient, on_consent_changed, on_reading_received
from shared.consent_view import ConsentState
from shared.consumer import MessageContext
from shared.events import AlertEvent, AlertKind, ConsentChanged, Purpose, Reading

CTX = MessageContext(topic="readings.v1", partition=0, offset=0, key=b"pt-1")
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def hr(value: float, second: int, patient: str = "pt-1") -> Reading:
    at = datetime(2026, 11, 23, 12, 0, second, tzinfo=UTC)
    return Reading(
        reading_id=f"r-{second}",
        patient_id=patient,
        source="t",
        metric="heart_rate",
        value=value,
        unit="/min",
        code="8867-4",
        measured_at=at,
        received_at=at,
    )


def consent_event(
    patient: str, active: bool, purpose: Purpose = Purpose.MONITORING
) -> ConsentChanged:
    return ConsentChanged(
        event_id=f"c-{patient}-{active}",
        patient_id=patient,
        tenant_id="t1",
        consent_id="c1",
        purpose=purpose,
        change="granted" if active else "revoked",
        purpose_active=active,
        changed_at=AT,
    )


def view(*granted: str) -> ConsentState:
    state = ConsentState(consent_required=True)
    for patient in granted:
        state.apply(consent_event(patient, True))
    state.caught_up = True
    return state


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[AlertEvent] = []
        self.fail = fail

    async def publish_alerts(self, events: Sequence[AlertEvent]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.events += events


async def test_a_red_reading_is_published_once() -> None:
    store, publisher = InMemoryStateStore(), RecordingPublisher()
    for r in (hr(130, 0), hr(135, 1), hr(80, 2)):
        await on_reading_received(r, CTX, store=store, publisher=publisher, consent=view("pt-1"))
    assert [e.kind for e in publisher.events] == [AlertKind.OPENED, AlertKind.RESOLVED]


async def test_a_failed_publish_leaves_state_unchanged_so_the_retry_emits_again() -> None:
    store, consent = InMemoryStateStore(), view("pt-1")
    with pytest.raises(ConnectionError):
        await on_reading_received(
            hr(130, 0), CTX, store=store, publisher=RecordingPublisher(True), consent=consent
        )
    retry = RecordingPublisher()
    await on_reading_received(hr(130, 0), CTX, store=store, publisher=retry, consent=consent)
    assert [e.kind for e in retry.events] == [AlertKind.OPENED]


async def test_a_patient_without_monitoring_consent_is_not_evaluated() -> None:
    store, publisher = InMemoryStateStore(), RecordingPublisher()
    await on_reading_received(hr(150, 0), CTX, store=store, publisher=publisher, consent=view())
    assert publisher.events == [] and await store.of_patient("pt-1") == {}


async def test_revoking_monitoring_resolves_open_episodes_as_consent_revoked() -> None:
    store, publisher, consent = InMemoryStateStore(), RecordingPublisher(), view("pt-1")
    await on_reading_received(hr(150, 0), CTX, store=store, publisher=publisher, consent=consent)
    await on_consent_changed(consent_event("pt-1", False), store=store, publisher=publisher)
    opened, resolved = publisher.events
    assert resolved.kind is AlertKind.RESOLVED and resolved.alert_id == opened.alert_id
    assert resolved.reason == "consent_revoked" and resolved.readings == ()
    assert await store.of_patient("pt-1") == {}


async def test_revoking_another_purpose_changes_nothing() -> None:
    store, publisher, consent = InMemoryStateStore(), RecordingPublisher(), view("pt-1")
    await on_reading_received(hr(150, 0), CTX, store=store, publisher=publisher, consent=consent)
    await on_consent_changed(
        consent_event("pt-1", False, Purpose.NOTIFICATIONS), store=store, publisher=publisher
    )
    assert len(publisher.events) == 1 and await store.of_patient("pt-1") != {}


async def test_erasure_forgets_the_patient_only() -> None:
    store, publisher, consent = InMemoryStateStore(), RecordingPublisher(), view("pt-1", "pt-2")
    await on_reading_received(hr(90, 0), CTX, store=store, publisher=publisher, consent=consent)
    await on_reading_received(
        hr(90, 0, "pt-2"), CTX, store=store, publisher=publisher, consent=consent
    )
    assert await erase_patient("pt-1", store=store) == "deleted 1 rule state(s)"
    assert await store.of_patient("pt-1") == {} and await store.of_patient("pt-2") != {}
