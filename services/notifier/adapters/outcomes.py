"""What a send's outcome writes: sent, retry later, next channel, or dead letter and ops notice.

Each outcome is one transaction guarded by the claim, so a send whose claim expired and was taken
over by another dispatcher records nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from services.notifier.adapters import deliveries
from services.notifier.adapters.contacts import disable_address, disabled_among
from services.notifier.adapters.metrics import DeliveryMetrics
from services.notifier.adapters.store import Tx
from services.notifier.adapters.tables import outbox
from services.notifier.domain import (
    Audience,
    Candidate,
    DeliveryPlan,
    FailOver,
    GiveUp,
    RetryAt,
    RetryPolicy,
    after_failure,
    counts_as_attempt,
    idempotency_key,
    on_oncall_post_lost,
    step_level,
)
from services.notifier.planning import ops_delivery
from services.notifier.ports import Channel, Receipt
from services.notifier.records import DeliveryRow, NewDelivery
from shared.events import DeadLetter
from shared.outbox import enqueue
from shared.topics import DEADLETTER

log = structlog.get_logger(__name__)
IN_PLAY = ("pending", "sending", "sent")


@dataclass(frozen=True)
class Failure:
    """A failed send as the provider described it."""

    permanent: bool
    code: str
    retry_after_s: float | None = None
    disable_recipient: bool = False


@dataclass(frozen=True)
class Outcomes:
    """Writes outcomes; `rand` feeds the backoff jitter."""

    policy: RetryPolicy
    ops_channel: str
    metrics: DeliveryMetrics
    rand: Callable[[], float]

    async def sent(self, tx: Tx, row: DeliveryRow, receipt: Receipt) -> None:
        """Mark sent, keep the provider's reference; the first main Slack post anchors the alert."""
        await self.sent_many(tx, [(row, receipt)])

    async def sent_many(self, tx: Tx, items: list[tuple[DeliveryRow, Receipt]]) -> None:
        """`sent` for many rows at once (one UPDATE each for the rows and their alerts)."""
        items = sorted(items, key=lambda item: item[0].id)
        done = await deliveries.finish_sent(
            tx, [(row, receipt.provider_ref[:256]) for row, receipt in items]
        )
        mine = [(row, receipt) for row, receipt in items if row.id in done]
        await tx.set_slack_refs(
            {
                row.alert_id: receipt.provider_ref[:128]
                for row, receipt in reversed(mine)  # the first main post of an alert wins
                if row.channel is Channel.SLACK
                and row.role == "post"
                and row.recipient_kind == "oncall"
            }
        )
        for row, _ in mine:
            if row.role == "post":
                who = f"{row.recipient_kind} {row.recipient_label}"
                await tx.note(row.alert_id, "delivered", who, channel=row.channel.value)

    async def later(self, tx: Tx, row: DeliveryRow, at: datetime) -> None:
        """Put a claim back without counting an attempt (waiting for its turn or its original)."""
        await deliveries.finish(tx, row, status="pending", next_attempt_at=at)

    async def cancelled(self, tx: Tx, row: DeliveryRow, reason: str) -> None:
        """Drop a send that must not happen any more."""
        await deliveries.finish(tx, row, status="cancelled", last_error=reason[:500])

    async def failed(self, tx: Tx, row: DeliveryRow, failure: Failure) -> str:
        """Retry, fall over to the next channel, or give up; return which."""
        kind = "permanent" if failure.permanent else "transient"
        counted = failure.permanent or counts_as_attempt(
            retry_after=_delay(failure.retry_after_s),
            waited=None if row.created_at is None else tx.now - row.created_at,
            policy=self.policy,
        )
        attempt = row.attempts + 1 if counted else row.attempts
        self.metrics.failed.labels(row.channel.value, kind).inc()
        if failure.disable_recipient:
            await disable_address(
                tx.conn,
                channel=row.channel,
                address=row.recipient,
                patient_id=row.patient_id if row.recipient_kind == "patient" else None,
                code=failure.code,
                at=tx.now,
            )
        await tx.alert(row.alert_id, lock=True)  # one fallback decision per alert at a time
        decision = await self._decide(tx, row, failure, attempt, counted=counted)
        error = f"{kind}: {failure.code}"[:500]
        if isinstance(decision, RetryAt):
            self.metrics.retried.labels(row.channel.value).inc()
            await deliveries.finish(
                tx,
                row,
                status="pending",
                attempts=attempt,
                next_attempt_at=decision.at,
                last_error=error,
            )
            return "retry"
        await deliveries.finish(tx, row, status="failed", attempts=attempt, last_error=error)
        who = f"{row.recipient_kind} {row.recipient_label}"
        await tx.note(row.alert_id, "delivery_failed", f"{who}: {error}", channel=row.channel.value)
        if await self._someone_else_covers(tx, row):
            return "failed"
        if isinstance(decision, FailOver):
            return await self._fall_over(tx, row, decision.candidate)
        return await self._dead(tx, row, decision, error)

    async def _decide(
        self, tx: Tx, row: DeliveryRow, failure: Failure, attempt: int, *, counted: bool
    ) -> RetryAt | FailOver | GiveUp:
        """The domain's call: same channel later, the next channel, or nothing left."""
        return after_failure(
            _plan_of(row),
            channel=row.channel,
            attempt=attempt,
            permanent=failure.permanent,
            failed_before=await self._failed_channels(tx, row),
            policy=self.policy,
            rand=self.rand(),
            now=tx.now,
            retry_after=_delay(failure.retry_after_s),
            counted=counted,
        )

    async def undelivered(self, tx: Tx, row: DeliveryRow, *, code: str) -> str:
        """A message the provider accepted but could not deliver: fall over like a refusal."""
        claimed = await deliveries.reclaim_sent(tx, row)
        if claimed is None:
            return "ignored"
        return await self.failed(tx, claimed, Failure(permanent=True, code=code))

    async def _failed_channels(self, tx: Tx, row: DeliveryRow) -> set[Channel]:
        others = await deliveries.siblings(tx, row)
        return {s.channel for s in others if s.status in ("failed", "dead")}

    async def _someone_else_covers(self, tx: Tx, row: DeliveryRow) -> bool:
        """Another device of the same person is still in play, or the person was reached."""
        others = await deliveries.siblings(tx, row)
        return any(s.status in IN_PLAY for s in others)

    async def _fall_over(self, tx: Tx, row: DeliveryRow, candidate: Candidate) -> str:
        alert = await tx.alert(row.alert_id)
        if alert is None or alert.snapshot.closed or row.role != "post":
            return "failed"
        dead = await disabled_among(tx.conn, [(candidate.channel, a) for a in candidate.addresses])
        rows = [
            NewDelivery(
                key=idempotency_key(
                    row.alert_id, row.event, channel=candidate.channel, recipient=a
                ),
                alert_id=row.alert_id,
                patient_id=row.patient_id,
                event=row.event,
                role=row.role,
                channel=candidate.channel,
                recipient=a,
                recipient_kind=row.recipient_kind,
                recipient_label=row.recipient_label,
                payload=row.payload,
                plan=row.plan,
            )
            for a in candidate.addresses
            if (candidate.channel, a) not in dead
        ]
        if not rows:
            return await self._dead(tx, row, GiveUp(reason="next channel disabled"), "disabled")
        await deliveries.queue(tx, rows)
        self.metrics.fell_over.labels(row.channel.value).inc()
        await tx.note(
            row.alert_id,
            "fallback",
            f"{row.recipient_kind} {row.recipient_label}: {row.channel.value} -> {candidate.channel.value}",
            channel=candidate.channel.value,
        )
        return "fallback"

    async def _dead(self, tx: Tx, row: DeliveryRow, decision: GiveUp, error: str) -> str:
        if row.role != "post":
            return "failed"  # an update or thread reply that failed leaves the message as it was
        await deliveries.set_status(tx, row.id, "dead")
        self.metrics.dead.labels(row.channel.value).inc()
        await tx.note(
            row.alert_id,
            "dead_lettered",
            f"{row.recipient_kind} {row.recipient_label}: {decision.reason}",
            channel=row.channel.value,
        )
        await enqueue(tx.conn, outbox, DEADLETTER, [_dead_letter(row, error, tx.now)], tx.now)
        log.warning(
            "delivery_dead_lettered",
            alert_id=row.alert_id,
            channel=row.channel.value,
            kind=row.recipient_kind,
        )
        if row.recipient_kind == "oncall" and row.channel is Channel.SLACK:
            await self._escalate_past_lost_post(tx, row)
        if row.recipient_kind != "ops":  # the ops channel failing is not reported to itself
            notice = ops_delivery(
                alert_id=row.alert_id,
                patient_id=row.patient_id,
                event=row.event,
                who=f"{row.recipient_kind} `{row.recipient_label}`",
                reason=error,
                ops_channel=self.ops_channel,
            )
            await deliveries.queue(tx, [notice])
        return "dead"

    async def _escalate_past_lost_post(self, tx: Tx, row: DeliveryRow) -> None:
        """Nobody saw the on-call post: the next level is due now (the scheduler sends it)."""
        alert, level = await tx.alert(row.alert_id), step_level(row.event)
        if alert is None or level is None:
            return
        forced = on_oncall_post_lost(alert.snapshot, level=level)
        if forced is alert.snapshot:
            return
        await tx.note(
            row.alert_id,
            "escalated_slack_failed",
            f"escalated to level {forced.forced_level}: the on-call Slack post failed",
            channel=row.channel.value,
        )
        await tx.save_alert(replace(alert, snapshot=forced))
        log.warning(
            "alert_escalated_slack_failed", alert_id=row.alert_id, level=forced.forced_level
        )


def _delay(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def _plan_of(row: DeliveryRow) -> DeliveryPlan:
    """The stored channel plan of a person, or the single channel of a Slack or ops message."""
    plan = row.plan
    if not plan.get("candidates"):
        return DeliveryPlan(
            alert_id=row.alert_id,
            event=row.event,
            audience=Audience.ONCALL_SLACK,
            recipient=row.recipient_label,
            candidates=(Candidate(row.channel, (row.recipient,)),),
            not_before=datetime.min,
        )
    return DeliveryPlan(
        alert_id=row.alert_id,
        event=row.event,
        audience=Audience(plan["audience"]),
        recipient=plan["recipient"],
        candidates=tuple(
            Candidate(Channel(c["channel"]), tuple(c["addresses"])) for c in plan["candidates"]
        ),
        not_before=datetime.min,
        language=plan.get("language"),
    )


def _dead_letter(row: DeliveryRow, error: str, at: datetime) -> DeadLetter:
    """A dead letter naming the send without its address or text."""
    summary = {
        "delivery_id": row.id,
        "alert_id": row.alert_id,
        "event": row.event,
        "channel": row.channel.value,
        "recipient_kind": row.recipient_kind,
        "recipient": row.recipient_label,
        "attempts": row.attempts + 1,
    }
    return DeadLetter(
        source_topic="notifier.deliveries",
        reason="delivery_failed",
        detail=error,
        key=row.alert_id,
        payload=json.dumps(summary),
        service="notifier",
        failed_at=at,
    )
