"""Kafka adapter of the AlertPublisher port."""

from __future__ import annotations

from collections.abc import Sequence

from shared.events import AlertEvent
from shared.kafka import KafkaEventPublisher
from shared.topics import ALERTS


class KafkaAlertPublisher:
    """Publish alert events on alerts.v1, keyed by patient id."""

    def __init__(self, publisher: KafkaEventPublisher) -> None:
        self._publisher = publisher

    async def publish_alerts(self, events: Sequence[AlertEvent]) -> None:
        """Publish and wait for the broker's acknowledgement."""
        await self._publisher.publish_many(ALERTS, events)
