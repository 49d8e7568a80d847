"""on_reading_received publishes transitions before it saves state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from services.rules.adapters.state import InMemoryStateStore
from services.rules.handlers import on_reading_received
from shared.events import AlertEvent, AlertKind, Reading
from shared.kafka import MessageContext

CTX = MessageContext(topic="readings.v1", partition=0, offset=0, key=b"pt-1")


def hr(value: float, second: int) -> Reading:
    at = datetime(2026, 11, 23, 12, 0, second, tzinfo=UTC)
    return Reading(
        reading_id=f"r-{second}",
        patient_id="pt-1",
        source="t",
        metric="heart_rate",
        value=value,
        unit="/min",
        code="8867-4",
        measured_at=at,
        received_at=at,
    )


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
        await on_reading_received(r, CTX, store=store, publisher=publisher)
    assert [e.kind for e in publisher.events] == [AlertKind.OPENED, AlertKind.RESOLVED]


async def test_a_failed_publish_leaves_state_unchanged_so_the_retry_emits_again() -> None:
    store = InMemoryStateStore()
    with pytest.raises(ConnectionError):
        await on_reading_received(hr(130, 0), CTX, store=store, publisher=RecordingPublisher(True))
    retry = RecordingPublisher()
    await on_reading_received(hr(130, 0), CTX, store=store, publisher=retry)
    assert [e.kind for e in retry.events] == [AlertKind.OPENED]
