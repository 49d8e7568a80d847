"""Delivery rows: queued in the transaction that decided them, claimed by one dispatcher at a time.

A row is one message to one address on one channel. Its idempotency key (alert, event, channel,
address) is unique, so planning the same send twice (a replayed event, two schedulers) inserts it
once. Claiming flips `pending` to `sending` under a fresh token in one UPDATE guarded by the status,
so two dispatchers never send the same row; a claim that outlives `claimed_until` (a crashed
instance) is claimable again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.adapters.store import Tx
from services.notifier.adapters.tables import deliveries as d
from services.notifier.ports import Channel
from services.notifier.records import DeliveryRow, NewDelivery

ACTIVE = ("pending", "sending")


def to_row(r: Any) -> DeliveryRow:
    """Build a DeliveryRow from a result row."""
    return DeliveryRow(
        id=r.id,
        key=r.idempotency_key,
        alert_id=r.alert_id,
        patient_id=r.patient_id,
        event=r.event,
        role=r.role,
        channel=Channel(r.channel),
        recipient=r.recipient,
        recipient_kind=r.recipient_kind,
        recipient_label=r.recipient_label,
        payload=json.loads(r.payload),
        plan=json.loads(r.candidates),
        ref_id=r.ref_id,
        status=r.status,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        claim_token=r.claim_token,
        provider_ref=r.provider_ref,
        provider_status=r.provider_status,
        last_error=r.last_error,
        created_at=r.created_at,
        sent_at=r.sent_at,
    )


async def queue(tx: Tx, items: Iterable[NewDelivery]) -> int:
    """Queue deliveries in the transaction (a key already queued is skipped); return how many
    were offered."""
    rows = [_values(tx, item) for item in items]
    tx.queue(rows)
    return len(rows)


def _values(tx: Tx, item: NewDelivery) -> dict[str, Any]:
    return {
        "idempotency_key": item.key,
        "alert_id": item.alert_id,
        "patient_id": item.patient_id,
        "event": item.event[:64],
        "role": item.role,
        "channel": item.channel.value,
        "recipient": item.recipient,
        "recipient_kind": item.recipient_kind,
        "recipient_label": item.recipient_label[:128],
        "payload": json.dumps(item.payload),
        "candidates": json.dumps(item.plan),
        "ref_id": item.ref_id,
        "status": "pending",
        "claim_token": None,
        "claimed_until": None,
        "attempts": 0,
        "next_attempt_at": item.not_before or tx.now,
        "created_at": tx.now,
        "updated_at": tx.now,
    }


async def of_alert(conn: AsyncConnection, alert_id: str) -> list[DeliveryRow]:
    """Every delivery of an alert, oldest first."""
    rows = await conn.execute(select(d).where(d.c.alert_id == alert_id).order_by(d.c.id))
    return [to_row(r) for r in rows]


async def cancel_pending(
    tx: Tx, *, alert_id: str | None = None, patient_id: str | None = None, kinds: Iterable[str]
) -> list[DeliveryRow]:
    """Cancel unclaimed deliveries to these recipient kinds (of an alert or a patient)."""
    await tx.flush()
    where = [d.c.status == "pending", d.c.recipient_kind.in_(tuple(kinds))]
    if alert_id is not None:
        where.append(d.c.alert_id == alert_id)
    if patient_id is not None:
        where.append(d.c.patient_id == patient_id)
    rows = [to_row(r) for r in await tx.conn.execute(select(d).where(*where))]
    if rows:
        await tx.conn.execute(
            update(d)
            .where(d.c.id.in_([r.id for r in rows]), d.c.status == "pending")
            .values(status="cancelled", updated_at=tx.now, last_error="cancelled")
        )
    return rows


def _due(now: datetime) -> Any:
    return or_(
        and_(d.c.status == "pending", d.c.next_attempt_at <= now),
        and_(d.c.status == "sending", d.c.claimed_until < now),
    )


async def due_ids(conn: AsyncConnection, *, now: datetime, limit: int) -> list[int]:
    """Ids of deliveries due now (and abandoned claims), oldest first; reads only."""
    query = select(d.c.id).where(_due(now)).order_by(d.c.id).limit(limit)
    return list((await conn.execute(query)).scalars().all())


async def claim(tx: Tx, ids: list[int], *, until: datetime) -> list[DeliveryRow]:
    """Claim those of `ids` still due for this dispatcher; another one may have taken some."""
    token = uuid.uuid4().hex
    await tx.conn.execute(
        update(d)
        .where(d.c.id.in_(ids), _due(tx.now))
        .values(status="sending", claim_token=token, claimed_until=until, updated_at=tx.now)
    )
    rows = await tx.conn.execute(select(d).where(d.c.claim_token == token).order_by(d.c.id))
    return [to_row(r) for r in rows]


async def adopted(conn: AsyncConnection, token: str) -> list[DeliveryRow]:
    """The rows a transaction queued already claimed under `token`."""
    rows = await conn.execute(select(d).where(d.c.claim_token == token).order_by(d.c.id))
    return [to_row(r) for r in rows]


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest pending delivery is due."""
    query = select(func.min(d.c.next_attempt_at)).where(d.c.status == "pending")
    due: datetime | None = (await conn.execute(query)).scalar()
    return due


async def finish(tx: Tx, row: DeliveryRow, **values: Any) -> bool:
    """Update a claimed row if this dispatcher still holds the claim; return whether it did."""
    result = await tx.conn.execute(
        update(d)
        .where(d.c.id == row.id, d.c.claim_token == row.claim_token, d.c.status == "sending")
        .values(claim_token=None, claimed_until=None, updated_at=tx.now, **values)
    )
    return result.rowcount == 1


async def finish_sent(tx: Tx, sent: list[tuple[DeliveryRow, str]]) -> set[int]:
    """Mark many claimed rows sent with their provider references; return the ids whose claim
    this dispatcher still held (the others were taken over and are left alone).

    One SELECT of the claims still held, then one UPDATE run for every row (executemany): the
    statements keep one shape whatever the batch size, so SQLAlchemy compiles each once (a CASE
    per row made a new statement, compiled afresh, for every batch size).
    """
    if not sent:
        return set()
    query = select(d.c.id, d.c.claim_token).where(
        d.c.id.in_([row.id for row, _ in sent]), d.c.status == "sending"
    )
    if tx.conn.dialect.name == "postgresql":
        query = query.with_for_update()  # SQLite: the writer lock already serialises this
    held = {r.id: r.claim_token for r in await tx.conn.execute(query)}
    mine = [
        (row, ref) for row, ref in sent if row.claim_token and held.get(row.id) == row.claim_token
    ]
    if mine:
        await tx.conn.execute(
            update(d)
            .where(
                d.c.id == bindparam("b_id"),
                d.c.claim_token == bindparam("b_token"),
                d.c.status == "sending",
            )
            .values(
                status="sent",
                claim_token=None,
                claimed_until=None,
                updated_at=tx.now,
                sent_at=tx.now,
                last_error=None,
                provider_ref=bindparam("b_ref"),
                attempts=bindparam("b_attempts"),
            ),
            [
                {"b_id": r.id, "b_token": r.claim_token, "b_ref": ref, "b_attempts": r.attempts + 1}
                for r, ref in mine
            ],
        )
    return {row.id for row, _ in mine}


async def release(tx: Tx, tokens_and_ids: Iterable[tuple[str, int | None]]) -> None:
    """Give unsent claims back (graceful stop), due at once for whoever runs next; an id of None
    releases every row of the token."""
    for token, row_id in tokens_and_ids:
        which = [d.c.claim_token == token, d.c.status == "sending"]
        if row_id is not None:
            which.append(d.c.id == row_id)
        await tx.conn.execute(
            update(d)
            .where(*which)
            .values(status="pending", claim_token=None, claimed_until=None, updated_at=tx.now)
        )


async def statuses(
    conn: AsyncConnection, ids: Iterable[int]
) -> dict[int, tuple[str, str | None, datetime]]:
    """Status, provider reference and next attempt of some rows (the messages others refer to)."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = await conn.execute(
        select(d.c.id, d.c.status, d.c.provider_ref, d.c.next_attempt_at).where(d.c.id.in_(wanted))
    )
    return {r.id: (r.status, r.provider_ref, r.next_attempt_at) for r in rows}


async def siblings(tx: Tx, row: DeliveryRow) -> list[DeliveryRow]:
    """Other sends of the same recipient and event (several devices, earlier channels)."""
    await tx.flush()
    rows = await tx.conn.execute(
        select(d).where(
            d.c.alert_id == row.alert_id,
            d.c.event == row.event,
            d.c.role == row.role,
            d.c.recipient_kind == row.recipient_kind,
            d.c.recipient_label == row.recipient_label,
            d.c.id != row.id,
        )
    )
    return [to_row(r) for r in rows]


async def by_provider_ref(tx: Tx, provider_ref: str) -> DeliveryRow | None:
    """The delivery a provider's message id belongs to (Twilio status callbacks)."""
    await tx.flush()
    row = (await tx.conn.execute(select(d).where(d.c.provider_ref == provider_ref))).first()
    return None if row is None else to_row(row)


async def main_messages(tx: Tx, alert_id: str) -> list[tuple[int, str]]:
    """(id, channel) of the alert's main Slack messages that are sent or on their way."""
    await tx.flush()
    rows = await tx.conn.execute(
        select(d.c.id, d.c.recipient)
        .where(
            d.c.alert_id == alert_id,
            d.c.role == "post",
            d.c.recipient_kind == "oncall",
            d.c.status.in_(("pending", "sending", "sent")),
        )
        .order_by(d.c.id)
    )
    return [(r.id, r.recipient) for r in rows]


async def reached(tx: Tx, alert_id: str) -> list[DeliveryRow]:
    """Posts of an alert that were sent (or are being sent) to someone."""
    await tx.flush()
    rows = await tx.conn.execute(
        select(d)
        .where(d.c.alert_id == alert_id, d.c.role == "post", d.c.status.in_(("sending", "sent")))
        .order_by(d.c.id)
    )
    return [to_row(r) for r in rows]


async def set_status(tx: Tx, row_id: int, status: str) -> None:
    """Set a row's status (after `finish` released its claim)."""
    await tx.conn.execute(
        update(d).where(d.c.id == row_id).values(status=status, updated_at=tx.now)
    )


def describe(row: DeliveryRow) -> dict[str, Any]:
    """A delivery as the timeline API shows it: who and where, never the address or the text."""
    return {
        "id": row.id,
        "event": row.event,
        "role": row.role,
        "channel": row.channel.value,
        "recipient_kind": row.recipient_kind,
        "recipient": row.recipient_label,
        "status": row.status,
        "attempts": row.attempts,
        "provider_status": row.provider_status,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
    }


async def set_provider_status(tx: Tx, row_id: int, status: str) -> None:
    """Store the provider's latest word on a sent message (Twilio: delivered, undelivered...)."""
    await tx.conn.execute(
        update(d).where(d.c.id == row_id).values(provider_status=status, updated_at=tx.now)
    )


async def reclaim_sent(tx: Tx, row: DeliveryRow) -> DeliveryRow | None:
    """Claim a sent row again so its late failure can be recorded like any other."""
    token = uuid.uuid4().hex
    result = await tx.conn.execute(
        update(d)
        .where(d.c.id == row.id, d.c.status == "sent")
        .values(status="sending", claim_token=token, updated_at=tx.now)
    )
    if result.rowcount != 1:
        return None
    return to_row((await tx.conn.execute(select(d).where(d.c.id == row.id))).one())
