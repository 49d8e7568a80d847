"""Kafka adapter of the ingest ReadingPublisher port."""

from __future__ import annotations

from collections.abc import Sequence

from services.ingest.errors import BrokerUnavailableError
from shared.events import Reading
from shared.kafka import KafkaEventPublisher, PublishFailedError
from shared.topics import READINGS


class KafkaReadingPublisher:
    """Publish readings on readings.v1 (acks=all)."""

    def __init__(self, publisher: KafkaEventPublisher) -> None:
        self._publisher = publisher

    async def publish_readings(self, readings: Sequence[Reading]) -> None:
        """Publish and wait for the broker; map broker trouble to BrokerUnavailableError."""
        try:
            await self._publisher.publish_many(READINGS, readings)
        except PublishFailedError as exc:
            raise BrokerUnavailableError(str(exc)) from exc
