"""Notifier HTTP routes for people with tokens: the alert list and timeline, acks, contact data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from services.notifier.actions import (
    ADMIN_SCOPE,
    AlertNotFoundError,
    Who,
    acknowledge,
    may_see,
    visible,
)
from services.notifier.adapters import deliveries
from services.notifier.adapters.contacts import (
    StoredContact,
    disabled_among,
    get_contact,
    put_contact,
)
from services.notifier.adapters.store import list_alerts, read_alert, timeline_of
from services.notifier.domain import AlertClosedError, ContactPreferences
from services.notifier.handlers import Notifier
from services.notifier.ports import Channel
from shared.audit import AuditRecorded, Outcome
from shared.auth import Principal, caller_record, require_scopes
from shared.http import (
    ApiError,
    NotFoundError,
    PatientPath,
    reject_duplicate_keys,
    require_json,
)

log = structlog.get_logger(__name__)
AlertPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Reader = Annotated[Principal, Depends(require_scopes("alerts:read"))]
Acker = Annotated[Principal, Depends(require_scopes("alerts:ack"))]
ContactWriter = Annotated[Principal, Depends(require_scopes("contact:write"))]
ContactReader = Annotated[Principal, Depends(require_scopes("contact:read"))]


class AlertClosedApiError(ApiError):
    """The alert is resolved or cancelled: nothing to acknowledge."""

    status = 409
    code = "alert_closed"


class AuditUnavailableError(ApiError):
    """Contact data is shown only when the read could be audited."""

    status = 503
    code = "audit_unavailable"


class AckIn(BaseModel):
    """Where the acknowledgement came from."""

    model_config = ConfigDict(extra="forbid")

    via: Literal["dashboard", "api"] = "api"


def _n(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.notifier
    return notifier


def build_router() -> APIRouter:
    """Routes of the alerts and contact APIs."""
    r = APIRouter(tags=["alerts"])

    @r.get("/v1/alerts", summary="Alerts of the caller's tenant, newest first (alerts:read)")
    async def alerts(
        request: Request,
        actor: Reader,
        status: Annotated[Literal["open", "all"], Query()] = "open",
    ) -> dict[str, list[dict[str, Any]]]:
        admin = ADMIN_SCOPE in actor.scopes
        async with _n(request).store.reading() as conn:
            rows = await list_alerts(
                conn, open_only=status == "open", tenant_id=actor.tenant_id, admin=admin
            )
        return {
            "alerts": [
                row.summary()
                for row in rows  # filtered in the query; checked again as a backstop
                if may_see(row.tenant_id, tenant_id=actor.tenant_id, admin=admin)
            ]
        }

    @r.get("/v1/alerts/{alert_id}", summary="One alert with its timeline and sends (alerts:read)")
    async def alert(alert_id: AlertPath, request: Request, actor: Reader) -> dict[str, Any]:
        return await _detail(_n(request), alert_id, actor)

    @r.post("/v1/alerts/{alert_id}/ack", summary="Acknowledge: the escalation stops (alerts:ack)")
    async def ack(
        alert_id: AlertPath,
        request: Request,
        actor: Acker,
        body: Annotated[AckIn | None, Body()] = None,
    ) -> dict[str, Any]:
        return await _ack(request, alert_id, actor, (body or AckIn()).via)

    r.include_router(_contact_router())
    return r


async def _detail(n: Notifier, alert_id: str, actor: Principal) -> dict[str, Any]:
    """An alert's summary, timeline and sends (who, where, when; never an address)."""
    async with n.store.reading() as conn:
        try:
            row = visible(
                await read_alert(conn, alert_id),
                actor.tenant_id,
                admin=ADMIN_SCOPE in actor.scopes,
            )
        except AlertNotFoundError as exc:
            raise NotFoundError("alert not found") from exc
        sends = await deliveries.of_alert(conn, alert_id)
        events = await timeline_of(conn, alert_id)
    return row.summary() | {
        "slack_ref": row.slack_ref,
        "timeline": events,
        "deliveries": [deliveries.describe(d) for d in sends],
    }


async def _ack(request: Request, alert_id: str, actor: Principal, via: str) -> dict[str, Any]:
    """Acknowledge as the token's subject (the routing agent of that id, if there is one)."""
    n = _n(request)
    agent = next((a for a in n.routing.agents if a.id == actor.sub), None)
    try:
        row = await acknowledge(
            n,
            alert_id,
            Who(id=actor.sub, via=via, agent=agent),
            tenant_id=actor.tenant_id,
            admin=ADMIN_SCOPE in actor.scopes,
        )
    except AlertNotFoundError as exc:
        raise NotFoundError("alert not found") from exc
    except AlertClosedError as exc:
        raise AlertClosedApiError("the alert is already resolved or cancelled") from exc
    record = _record(
        actor, "alert.acknowledged", row.snapshot.patient_id, "success", alert_id=alert_id, via=via
    )
    await _audit(request, record, strict=False)
    return row.summary()


def _contact_router() -> APIRouter:
    r = APIRouter(prefix="/v1/patients/{patient_id}/contact", tags=["contact"])
    body_checks: list[Any] = [Depends(require_json), Depends(reject_duplicate_keys)]

    @r.put("", dependencies=body_checks, summary="Set how the patient is reached (contact:write)")
    async def put(
        patient_id: PatientPath, prefs: ContactPreferences, request: Request, actor: ContactWriter
    ) -> dict[str, Any]:
        n = await _owned(request, patient_id, actor)
        stored = StoredContact(
            patient_id=patient_id,
            tenant_id=actor.tenant_id,
            prefs=prefs,
            updated_at=datetime.now(UTC),
            updated_by=actor.sub,
        )
        async with n.store.transaction() as tx:
            await put_contact(tx.conn, stored)
        await _audit(request, _record(actor, "contact.set", patient_id, "success"), strict=False)
        return await _contact_out(n, stored)

    @r.get("", summary="How the patient is reached (contact:read)")
    async def get(
        patient_id: PatientPath, request: Request, actor: ContactReader
    ) -> dict[str, Any]:
        n = await _owned(request, patient_id, actor)
        await _audit(request, _record(actor, "contact.read", patient_id, "success"), strict=True)
        async with n.store.reading() as conn:
            stored = await get_contact(conn, patient_id)
        if stored is None:
            raise NotFoundError("no contact preferences set for this patient")
        return await _contact_out(n, stored)

    return r


async def _owned(request: Request, patient_id: str, actor: Principal) -> Notifier:
    """The notifier, if the patient belongs to the caller's tenant (else 404, audited)."""
    n = _n(request)
    if n.consent.tenant_of(patient_id) != actor.tenant_id:
        await _audit(request, _record(actor, "authz.denied", patient_id, "denied"), strict=False)
        raise NotFoundError("patient not found")
    return n


async def _contact_out(n: Notifier, stored: StoredContact) -> dict[str, Any]:
    prefs = stored.prefs
    pairs = [(Channel.PUSH, t) for t in prefs.push_tokens]
    pairs += [(Channel.SMS, prefs.phone)] if prefs.phone else []
    pairs += [(Channel.WHATSAPP, prefs.whatsapp)] if prefs.whatsapp else []
    async with n.store.reading() as conn:
        dead = await disabled_among(conn, pairs)
    return {
        "patient_id": stored.patient_id,
        **prefs.model_dump(mode="json"),
        "disabled": [{"channel": c.value, "address": a} for c, a in pairs if (c, a) in dead],
        "updated_at": stored.updated_at.isoformat(),
        "updated_by": stored.updated_by,
    }


def _record(
    actor: Principal, action: str, patient_id: str, outcome: Outcome, **details: str
) -> AuditRecorded:
    return caller_record(
        actor,
        service="notifier",
        action=action,
        at=datetime.now(UTC),
        outcome=outcome,
        patient_id=patient_id,
        purpose="monitoring",
        reason="patient_not_in_tenant" if outcome == "denied" else None,
        details=details,
    )


async def _audit(request: Request, record: AuditRecorded, *, strict: bool) -> None:
    """Record an audit event; `strict`: refuse the request when it cannot be recorded."""
    try:
        await request.app.state.audit_sink.record(record)
    except Exception as exc:
        log.error("audit_record_failed", action=record.action, error=type(exc).__name__)
        if strict:
            raise AuditUnavailableError("the read cannot be audited right now") from exc
