"""Erasure (LGPD Art. 18 VI) plumbing shared by every service: act on requests, report completion."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog

from shared.consumer import MessageContext
from shared.events import ErasureEvent
from shared.ids import derive_id
from shared.kafka import KafkaEventPublisher
from shared.topics import ERASURE

log = structlog.get_logger(__name__)

Eraser = Callable[[str], Awaitable[str]]


def erasure_handler(
    *, service: str, erase: Eraser, publisher: KafkaEventPublisher
) -> Callable[[ErasureEvent, MessageContext], Awaitable[None]]:
    """Build the erasure.v1 handler: run `erase(patient_id)`, then publish `completed`."""

    async def on_erasure_event(event: ErasureEvent, _: MessageContext) -> None:
        if event.kind != "requested":
            return
        detail = await erase(event.patient_id)
        await publisher.publish(
            ERASURE,
            ErasureEvent(
                event_id=derive_id("erasure-completed", event.request_id, service),
                request_id=event.request_id,
                patient_id=event.patient_id,
                tenant_id=event.tenant_id,
                kind="completed",
                service=service,
                detail=detail,
                occurred_at=datetime.now(UTC),
            ),
        )
        log.info("erasure_completed", request_id=event.request_id, service=service)

    return on_erasure_event
