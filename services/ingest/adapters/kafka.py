"""Kafka adapters of the ingest ReadingPublisher and DeadLetterSink ports."""

from __future__ import annotations

from collections.abc import Sequence

from services.ingest.errors import BrokerUnavailableError
from shared.events import DeadLetter, Reading
from shared.kafka import KafkaEventPublisher, PublishFailedError
from shared.topics import DEADLETTER, READINGS


class KafkaReadingPublisher:
    """Publish readings on readings.v1 and dead letters on deadletter.v1 (acks=all)."""

    def __init__(self, publisher: KafkaEventPublisher) -> None:
        self._publisher = publisher

    async def publish_readings(self, readings: Sequence[Reading]) -> None:
        """Publish and wait for the broker; map broker trouble to BrokerUnavailableError."""
        try:
            await self._publisher.publish_many(READINGS, readings)
        except PublishFailedError as exc:
            raise BrokerUnavailableError(str(exc)) from exc

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Publish dead letters and wait for the broker."""
        try:
            await self._publisher.publish_many(DEADLETTER, letters)
        except PublishFailedError as exc:
            raise BrokerUnavailableError(str(exc)) from exc
