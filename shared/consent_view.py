"""Local consent view every service builds from consent.v1: read to the end before ready, then live.

The view answers "may I process this patient's data for this purpose?" from memory, so enforcement
costs nothing per event and keeps working while the consent service is down. Fail closed: before
the view has caught up, and for a patient with no active consent (CONSENT_REQUIRED=true), the
answer is no.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from shared.events import ConsentChanged, Purpose
from shared.topics import CONSENT

log = structlog.get_logger(__name__)

Listener = Callable[[ConsentChanged], Awaitable[None]]


class ConsentState:
    """The current consent state per (patient, purpose), and who owns each patient."""

    def __init__(self, *, consent_required: bool) -> None:
        self._consent_required = consent_required
        self._active: dict[tuple[str, Purpose], bool] = {}
        self._tenant: dict[str, str] = {}
        self.caught_up = False

    def apply(self, event: ConsentChanged) -> bool:
        """Apply a change; return True when the answer for (patient, purpose) changed."""
        key = (event.patient_id, event.purpose)
        before = self._active.get(key)
        self._active[key] = event.purpose_active
        self._tenant[event.patient_id] = event.tenant_id
        return before != event.purpose_active

    def allows(self, patient_id: str, purpose: Purpose) -> bool:
        """Return True when processing is allowed (fail closed until caught up)."""
        if not self.caught_up:
            return False
        known = self._active.get((patient_id, purpose))
        return (not self._consent_required) if known is None else known

    def tenant_of(self, patient_id: str) -> str | None:
        """Return the tenant a patient belongs to, if any consent was ever recorded."""
        return self._tenant.get(patient_id)


class KafkaConsentView(ConsentState):
    """ConsentState fed from consent.v1 (no consumer group: every instance reads everything)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        consent_required: bool,
        client_id: str,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        super().__init__(consent_required=consent_required)
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """Call `listener` for every live change after catch-up (e.g. close episodes on revoke)."""
        self._listeners.append(listener)

    async def run(self) -> None:
        """Catch up to the end of consent.v1, mark ready, then follow it until cancelled."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            partitions = await self._assign_all(consumer)
            targets = await consumer.end_offsets(partitions)
            await self._catch_up(consumer, targets)
            self.caught_up = True
            log.info("consent_view_caught_up", partitions=len(partitions))
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        await self._apply_record(record.value, live=True)
        finally:
            self.caught_up = False
            await consumer.stop()

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        while not (ids := consumer.partitions_for_topic(CONSENT.name)):
            await consumer.topics()  # refreshes metadata: the topic may be being created
            await asyncio.sleep(0.2)
        partitions = [TopicPartition(CONSENT.name, p) for p in sorted(ids)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        return partitions

    async def _catch_up(
        self, consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]
    ) -> None:
        pending = {tp for tp, end in targets.items() if end > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for records in batch.values():
                for record in records:
                    await self._apply_record(record.value, live=False)
            for tp in list(pending):
                if await consumer.position(tp) >= targets[tp]:
                    pending.discard(tp)

    async def _apply_record(self, raw: bytes | None, *, live: bool) -> None:
        try:
            event = CONSENT.decode(raw or b"")
        except ValidationError:
            log.warning("consent_event_undecodable")
            return
        changed = self.apply(event)
        log.info(
            "consent_view_updated",
            patient_id=event.patient_id,
            purpose=event.purpose.value,
            active=event.purpose_active,
            live=live,
        )
        if live and changed:
            for listener in self._listeners:
                await listener(event)
