"""What people do to alerts (acknowledge, escalate, resolve) and what consent and erasure undo."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from services.notifier.adapters import deliveries
from services.notifier.adapters.contacts import delete_contact, get_contact
from services.notifier.adapters.store import (
    Tx,
    alerts_of_patient,
    delete_patient_alerts,
    timeline_of,
)
from services.notifier.domain import (
    Actor,
    Agent,
    AlertClosedError,
    AlertSnapshot,
    Transition,
    on_ack,
    on_cancel,
    on_escalate,
    on_resolve,
)
from services.notifier.errors import NotifierError
from services.notifier.handlers import Notifier, advance, close
from services.notifier.planning import Main, slack_changes
from services.notifier.records import AlertRow
from shared.events import ConsentChanged, Purpose

log = structlog.get_logger(__name__)


class AlertNotFoundError(NotifierError):
    """No such alert, or another tenant's (the same answer for both)."""


@dataclass(frozen=True)
class Who:
    """Who acts: the routing agent when known (Slack user, or a token subject that is an agent
    id), else the token subject; and from where (slack, dashboard, api)."""

    id: str
    via: str
    agent: Agent | None = None


ADMIN_SCOPE = "admin"


def may_see(alert_tenant: str | None, *, tenant_id: str, admin: bool) -> bool:
    """Whether a caller of `tenant_id` may see an alert of `alert_tenant`: its own tenant's only;
    an alert whose tenant is unknown (no consent recorded when it opened) only with `admin`."""
    return alert_tenant == tenant_id if alert_tenant is not None else admin


def visible(row: AlertRow | None, tenant_id: str | None, *, admin: bool = False) -> AlertRow:
    """The alert if the caller may see it (tenant None: a signed Slack request, sees all)."""
    if row is None or (
        tenant_id is not None and not may_see(row.tenant_id, tenant_id=tenant_id, admin=admin)
    ):
        raise AlertNotFoundError("alert not found")
    return row


async def acknowledge(
    n: Notifier, alert_id: str, who: Who, *, tenant_id: str | None, admin: bool = False
) -> AlertRow:
    """Acknowledge: the climb stops, pending pages to agents are dropped, Slack shows who."""

    async def work(tx: Tx) -> AlertRow:
        row = visible(await tx.alert(alert_id, lock=True), tenant_id, admin=admin)
        acked = _ack(row.snapshot, who, now=tx.now)
        if acked is row.snapshot:
            return row  # already acknowledged: the first ack stands
        await deliveries.cancel_pending(tx, alert_id=alert_id, kinds=("agent", "manager"))
        mains = [Main(i, c) for i, c in await deliveries.main_messages(tx, alert_id)]
        queued = slack_changes(acked, Transition.ACKNOWLEDGED, "acknowledged", mains)
        await tx.note(
            alert_id, "acknowledged", f"acknowledged via {who.via}", actor=who.id, channel=who.via
        )
        saved = await tx.save_alert(replace(row, snapshot=acked, acknowledged_via=who.via))
        await deliveries.queue(tx, queued)
        return saved

    row = await n.store.atomically(work)
    n.committed([row])
    log.info("alert_acknowledged", alert_id=alert_id, via=who.via)
    return row


async def escalate(n: Notifier, alert_id: str, who: Who) -> AlertRow:
    """Make the next level due now and notify it at once (the Escalate button)."""

    async def work(tx: Tx) -> AlertRow:
        row = visible(await tx.alert(alert_id, lock=True), None)
        forced = on_escalate(row.snapshot)
        if forced is row.snapshot:
            return row
        await tx.note(
            alert_id, "escalation_requested", f"via {who.via}", actor=who.id, channel=who.via
        )
        return await advance(tx, replace(row, snapshot=forced), n)

    row = await n.store.atomically(work)
    n.committed([row])
    log.info("alert_escalated_by_hand", alert_id=alert_id, via=who.via)
    return row


async def resolve(n: Notifier, alert_id: str, who: Who) -> AlertRow:
    """Resolve by hand (the Resolve button): every message sent is updated."""

    async def work(tx: Tx) -> AlertRow:
        row = visible(await tx.alert(alert_id, lock=True), None)
        if row.snapshot.closed:
            raise AlertClosedError(f"alert {alert_id} is closed")
        resolved = on_resolve(row.snapshot, now=tx.now, by=who.agent)
        await tx.note(
            alert_id, "resolved", f"resolved via {who.via}", actor=who.id, channel=who.via
        )
        return await close(tx, replace(row, snapshot=resolved), Transition.RESOLVED)

    row = await n.store.atomically(work)
    n.committed([row])
    return row


async def on_consent_changed(event: ConsentChanged, *, n: Notifier) -> None:
    """Notifications withdrawn: drop pending patient messages. Monitoring withdrawn: cancel the
    patient's open alerts (nothing more is sent, Slack shows them cancelled)."""
    if event.purpose_active or event.purpose not in (Purpose.NOTIFICATIONS, Purpose.MONITORING):
        return

    async def work(tx: Tx) -> list[AlertRow]:
        dropped = await deliveries.cancel_pending(
            tx, patient_id=event.patient_id, kinds=("patient",)
        )
        for alert_id in sorted({d.alert_id for d in dropped}):
            await tx.note(alert_id, "patient_messages_cancelled", "notifications consent withdrawn")
        if event.purpose is not Purpose.MONITORING:
            return []
        closed = []
        for row in await tx.open_alerts_of(event.patient_id):
            await tx.note(row.alert_id, "cancelled", "monitoring consent withdrawn")
            cancelled = replace(row, snapshot=on_cancel(row.snapshot, now=tx.now))
            closed.append(await close(tx, cancelled, Transition.CANCELLED))
        return closed

    rows = await n.store.atomically(work)
    n.committed(rows)
    log.info("consent_withdrawal_applied", purpose=event.purpose.value, alerts_cancelled=len(rows))


async def erase_patient(patient_id: str, *, n: Notifier) -> str:
    """Erasure: delete the patient's contact data, alerts, deliveries and timelines."""

    async def work(tx: Tx) -> tuple[int, int]:
        return await delete_contact(tx.conn, patient_id), await delete_patient_alerts(
            tx, patient_id
        )

    contact_rows, alert_rows = await n.store.atomically(work)
    return f"deleted {contact_rows} contact row(s) and {alert_rows} alert row(s)"


async def export_patient(patient_id: str, *, n: Notifier) -> dict[str, object]:
    """What the notifier holds about a patient: contact preferences, alerts with timelines."""
    async with n.store.reading() as conn:
        stored = await get_contact(conn, patient_id)
        alerts = []
        for row in await alerts_of_patient(conn, patient_id):
            sends = await deliveries.of_alert(conn, row.alert_id)
            alerts.append(
                row.summary()
                | {
                    "timeline": await timeline_of(conn, row.alert_id),
                    "deliveries": [deliveries.describe(d) for d in sends],
                }
            )
    contact = None if stored is None else stored.prefs.model_dump(mode="json")
    return {"contact": contact, "alerts": alerts}


def _ack(snapshot: AlertSnapshot, who: Who, *, now: datetime) -> AlertSnapshot:
    """on_ack for a routing agent; a token subject who is no agent is recorded by its id."""
    if who.agent is not None:
        return on_ack(snapshot, who.agent, now=now)
    if snapshot.closed:
        raise AlertClosedError(f"alert {snapshot.alert_id} is closed")
    if snapshot.acknowledged:
        return snapshot
    actor = Actor(agent_id=who.id)  # no Slack user: Slack shows the id, not a broken mention
    return snapshot.model_copy(update={"acknowledged_by": actor, "acknowledged_at": now})
