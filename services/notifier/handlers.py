"""What the notifier does with alert events and due timers, one transaction per unit of work.

A poll batch of alerts.v1 (the messages of every partition it returned) is handled in one
transaction: the event ids (dedup), the alerts and every delivery they cause are committed
together, and only then does the consumer commit the offsets. A crash before the commit replays
the batch into the same rows (idempotency keys); a crash after it finds the events already
handled. Nothing is sent here: the dispatcher sends what was committed, woken right after the
commit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

import structlog

from services.notifier.adapters import deliveries
from services.notifier.adapters.contacts import disabled_among, get_contact, get_contacts
from services.notifier.adapters.store import Store, Tx
from services.notifier.domain import (
    AlertSnapshot,
    Audience,
    ContactPreferences,
    Routing,
    Step,
    TargetKind,
    Transition,
    due_steps,
    on_resolve,
    on_severity_raised,
    open_alert,
    record_steps,
)
from services.notifier.errors import NotifierError
from services.notifier.planning import (
    Main,
    ops_delivery,
    person_followups,
    plan_step,
    slack_changes,
)
from services.notifier.ports import Channel
from services.notifier.records import AlertRow, NewDelivery
from shared.consent_view import ConsentState
from shared.consumer import MessageContext, Rejection
from shared.events import AlertEvent, AlertKind, Purpose, Severity

log = structlog.get_logger(__name__)
PERSON_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.PUSH)
PEOPLE = ("patient", "agent", "manager")
YIELD_EVERY = 16  # events of a poll batch handled between two yields to the event loop


class ConsentNotReadyError(NotifierError):
    """Consent is not known yet; the batch is retried rather than decided on a guess."""


@dataclass
class Notifier:
    """The notifier's moving parts, shared by the consumer, the workers and the API."""

    store: Store
    routing: Routing
    consent: ConsentState
    dashboard_url: str
    ops_channel: str
    on_commit: list[Callable[[list[AlertRow], str | None], None]] = field(default_factory=list)
    # When set, sends due at once are written already claimed (for this long) and handed to the
    # dispatcher after the commit: no claim round trip between an alert and its page.
    adopt_ttl: timedelta | None = None

    def committed(self, rows: list[AlertRow], adopted: str | None = None) -> None:
        """Tell the workers and the live feed what was just committed (and the adopted claim)."""
        for hook in self.on_commit:
            hook(rows, adopted)

    def adopting(self, tx: Tx, token: str | None) -> None:
        """Make the transaction write its due sends claimed under `token`."""
        if token is not None and self.adopt_ttl is not None:
            tx.adopt = (token, tx.now + self.adopt_ttl)

    def adoption_token(self) -> str | None:
        """A fresh claim token, or None when adoption is off."""
        return uuid.uuid4().hex if self.adopt_ttl is not None else None


async def on_alert_events(
    batch: list[tuple[AlertEvent, MessageContext]], *, notifier: Notifier
) -> list[Rejection]:
    """Store a poll batch (every partition's messages) and what it causes in one transaction."""
    if not notifier.consent.caught_up:
        # Fail closed would drop the alerts: raising makes the consumer retry the batch shortly.
        raise ConsentNotReadyError("the consent view has not caught up yet")

    token = notifier.adoption_token()

    async def work(tx: Tx) -> list[AlertRow]:
        notifier.adopting(tx, token)
        fresh = await tx.unseen(event.event_id for event, _ in batch)
        await tx.preload(event.alert_id for event, _ in batch if event.event_id in fresh)
        patients = {event.patient_id for event, _ in batch if event.event_id in fresh}
        tx.contacts |= await get_contacts(tx.conn, patients)
        changed: dict[str, AlertRow] = {}
        handled: list[tuple[str, str]] = []
        for i, (event, _) in enumerate(batch):
            if event.event_id not in fresh:
                continue
            if i and i % YIELD_EVERY == 0:
                # SQLite calls run on the loop's thread: let sends in flight read their answers
                # between events of a big batch instead of waiting for the whole transaction.
                await asyncio.sleep(0)
            fresh.discard(event.event_id)  # the same event twice in one batch
            row = await apply_event(tx, event, notifier)
            if row is not None:
                changed[row.alert_id] = row
            handled.append((event.event_id, event.alert_id))
        await tx.mark_handled(handled)
        return list(changed.values())

    rows = await notifier.store.atomically(work)
    notifier.committed(rows, token)
    return []


async def apply_event(tx: Tx, event: AlertEvent, n: Notifier) -> AlertRow | None:
    """Open, raise or resolve the alert an event is about; return the alert if it changed."""
    if event.kind is AlertKind.RESOLVED:
        return await _resolved(tx, event, n)
    if event.kind not in (AlertKind.OPENED, AlertKind.ESCALATED):
        return None
    if event.severity is Severity.GREEN:
        return None
    if not n.consent.allows(event.patient_id, Purpose.MONITORING):
        log.info("alert_skipped_no_consent", alert_id=event.alert_id, event_id=event.event_id)
        return None
    route, policy = n.routing.route(event.severity), n.routing.policy_for(event.severity)
    assert route is not None and policy is not None  # not green
    existing = await tx.alert(event.alert_id)
    if existing is None:
        snapshot = open_alert(event, policy=policy, slack_channel=route.slack_channel, now=tx.now)
        row = AlertRow(
            snapshot=snapshot,
            last_event=event,
            tenant_id=n.consent.tenant_of(event.patient_id),
            opened_at=tx.now,
            updated_at=tx.now,
        )
        await tx.note(row.alert_id, "opened", f"{event.severity.value} alert opened")
        log.info("alert_opened", alert_id=row.alert_id, severity=event.severity.value)
        return await advance(tx, row, n, new=True)
    if existing.snapshot.closed:
        return None
    raised = on_severity_raised(
        existing.snapshot,
        event.severity,
        policy=policy,
        slack_channel=route.slack_channel,
        now=tx.now,
    )
    row = replace(existing, snapshot=raised, last_event=event)
    if raised is existing.snapshot:
        return await tx.save_alert(row)
    await tx.note(row.alert_id, "severity_raised", f"severity raised to {event.severity.value}")
    return await advance(tx, row, n, transition=Transition.SEVERITY_RAISED)


async def advance(
    tx: Tx,
    row: AlertRow,
    n: Notifier,
    *,
    transition: Transition | None = None,
    new: bool = False,
) -> AlertRow:
    """Queue the levels due now (and the Slack updates they imply), then save the alert."""
    before = row.snapshot
    steps = due_steps(before, tx.now)
    mains = [] if new else [Main(i, c) for i, c in await deliveries.main_messages(tx, row.alert_id)]
    queued = []
    for step in steps:
        queued += await _plan(tx, before, step, n, mains)
    after = record_steps(before, steps, now=tx.now)
    change = transition or _transition(steps)
    if change is not None and mains:
        name = steps[-1].event if steps else f"{after.severity.value}.{change.value}"
        queued += slack_changes(after, change, name, mains)
    for step in steps:
        what = "retriggered" if step.retrigger else "reminder" if step.renotify else "notified"
        await tx.note(row.alert_id, f"level_{what}", f"level {step.level} of {step.of_levels}")
    saved = await tx.save_alert(replace(row, snapshot=after), new=new)
    await deliveries.queue(tx, queued)
    return saved


async def _plan(
    tx: Tx, alert: AlertSnapshot, step: Step, n: Notifier, mains: list[Main]
) -> list[NewDelivery]:
    """Plan one step; recipients without any usable address are noted and reported to ops."""
    wants_patient = any(t.kind is TargetKind.PATIENT for t in step.targets)
    if wants_patient and alert.patient_id not in tx.contacts:
        tx.contacts[alert.patient_id] = await get_contact(tx.conn, alert.patient_id)
    stored = tx.contacts.get(alert.patient_id) if wants_patient else None
    contact = stored.prefs if stored is not None else None
    pairs = tuple(_addresses(n.routing, step, contact))
    if pairs not in tx.disabled:  # agents' addresses: read once per poll batch, not per alert
        tx.disabled[pairs] = await disabled_among(tx.conn, pairs)
    disabled = tx.disabled[pairs]
    planned = plan_step(
        alert,
        step,
        routing=n.routing,
        mains=mains,
        contact=contact,
        disabled=disabled,
        notifications_allowed=n.consent.allows(alert.patient_id, Purpose.NOTIFICATIONS),
        dashboard_url=n.dashboard_url,
        now=tx.now,
    )
    out = list(planned.deliveries)
    for plan in planned.unreachable:
        await tx.note(
            alert.alert_id,
            "unreachable",
            f"{plan.audience.value} {plan.recipient}: no usable address",
        )
        if plan.audience is Audience.AGENT:
            out.append(
                ops_delivery(
                    alert_id=alert.alert_id,
                    patient_id=alert.patient_id,
                    event=step.event,
                    who=f"agent `{plan.recipient}`",
                    reason="no usable address",
                    ops_channel=n.ops_channel,
                )
            )
    return out


def _addresses(
    routing: Routing, step: Step, contact: ContactPreferences | None
) -> list[tuple[Channel, str]]:
    """Every (channel, address) a step may use: agents' and the patient's, on every channel."""
    found: list[str] = []
    if any(t.kind is TargetKind.ROLE for t in step.targets):
        agents = routing.agents
        found += [a.phone for a in agents] + [t for a in agents for t in a.push_tokens]
    if contact is not None:
        found += [a for a in (contact.phone, contact.whatsapp, *contact.push_tokens) if a]
    return [(channel, address) for address in found for channel in PERSON_CHANNELS]


def _transition(steps: list[Step]) -> Transition | None:
    if not steps:
        return None
    if all(s.renotify for s in steps):
        return Transition.REMINDED
    return Transition.ESCALATED if max(s.level for s in steps) > 1 else None


async def _resolved(tx: Tx, event: AlertEvent, n: Notifier) -> AlertRow | None:
    existing = await tx.alert(event.alert_id)
    if existing is None or existing.snapshot.closed:
        return None
    row = replace(existing, snapshot=on_resolve(existing.snapshot, now=tx.now))
    await tx.note(row.alert_id, "resolved", event.reason or "resolved by the rules", actor="rules")
    return await close(tx, row, Transition.RESOLVED)


async def close(tx: Tx, row: AlertRow, transition: Transition) -> AlertRow:
    """Resolve or cancel: stop pending sends, update Slack, tell people already reached."""
    kinds = PEOPLE if transition is Transition.RESOLVED else (*PEOPLE, "oncall")
    # A resolved alert's pending main post still goes out, rendered as resolved: nothing is lost.
    await deliveries.cancel_pending(tx, alert_id=row.alert_id, kinds=kinds)
    mains = [Main(i, c) for i, c in await deliveries.main_messages(tx, row.alert_id)]
    reached = await deliveries.reached(tx, row.alert_id)
    queued = slack_changes(row.snapshot, transition, transition.value, mains)
    queued += person_followups(row.snapshot, transition, reached)
    saved = await tx.save_alert(row)
    await deliveries.queue(tx, queued)
    log.info("alert_closed", alert_id=row.alert_id, how=transition.value)
    return saved
