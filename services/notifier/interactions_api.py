"""Provider callbacks, signed by the provider instead of a bearer token: Slack buttons, Twilio
delivery statuses."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, parse_qsl

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.notifier.actions import AlertNotFoundError, Who, acknowledge, escalate, resolve
from services.notifier.adapters import deliveries
from services.notifier.adapters.outcomes import Outcomes
from services.notifier.adapters.slack import verify_slack_request
from services.notifier.adapters.store import Tx
from services.notifier.adapters.twilio import status_moves_forward, verify_twilio_signature
from services.notifier.domain import (
    ACK_ACTION,
    ESCALATE_ACTION,
    RESOLVE_ACTION,
    Agent,
    AlertClosedError,
    EscalationError,
)
from services.notifier.handlers import Notifier
from services.notifier.settings import NotifierSettings
from shared.audit import AuditActor, AuditRecorded
from shared.http import ApiError

log = structlog.get_logger(__name__)
UNDELIVERED = ("failed", "undelivered")


class BadSignatureError(ApiError):
    """The request is not signed by the provider (or is older than five minutes)."""

    status = 401
    code = "invalid_signature"


class BadSlackPayloadError(ApiError):
    """A signed Slack interaction whose payload is not a block_actions click this service reads."""

    status = 400
    code = "invalid_payload"


class SlackUser(BaseModel):
    """Who clicked (only the id is read)."""

    model_config = ConfigDict(extra="ignore")
    id: str


class SlackAction(BaseModel):
    """One clicked button: which action, on which alert (the button's value)."""

    model_config = ConfigDict(extra="ignore")
    action_id: str
    value: str = ""


class SlackClick(BaseModel):
    """The parts of Slack's block_actions payload the buttons need."""

    model_config = ConfigDict(extra="ignore")
    user: SlackUser
    actions: list[SlackAction] = Field(min_length=1)


class CallbackNotConfiguredError(ApiError):
    """The provider's secret is not configured on this service."""

    status = 503
    code = "not_configured"


def build_callbacks_router() -> APIRouter:
    """POST /v1/slack/interactions and POST /v1/twilio/status."""
    r = APIRouter(tags=["provider callbacks"])

    @r.post("/v1/slack/interactions", summary="Slack buttons (Slack-signed, no bearer token)")
    async def slack_interactions(request: Request) -> JSONResponse:
        settings: NotifierSettings = request.app.state.settings
        if settings.slack_signing_secret is None:
            raise CallbackNotConfiguredError("SLACK_SIGNING_SECRET is not set")
        body = await request.body()
        if not verify_slack_request(
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            timestamp=request.headers.get("x-slack-request-timestamp"),
            body=body,
            signature=request.headers.get("x-slack-signature"),
            now=time.time(),
        ):
            raise BadSignatureError("the Slack signature is missing, wrong or too old")
        text = await apply_slack_action(request.app.state.notifier, _payload(body), request)
        return JSONResponse({"response_type": "ephemeral", "replace_original": False, "text": text})

    @r.post("/v1/twilio/status", summary="Twilio delivery status callbacks (Twilio-signed)")
    async def twilio_status(request: Request) -> JSONResponse:
        settings: NotifierSettings = request.app.state.settings
        if settings.twilio_auth_token is None:
            raise CallbackNotConfiguredError("TWILIO_AUTH_TOKEN is not set")
        params = _form(await request.body())
        if not verify_twilio_signature(
            auth_token=settings.twilio_auth_token.get_secret_value(),
            url=status_callback_url(settings) or str(request.url),
            params=params,
            signature=request.headers.get("x-twilio-signature", ""),
        ):
            raise BadSignatureError("the Twilio signature is missing or wrong")
        await record_twilio_status(request.app.state.notifier, request.app.state.outcomes, params)
        return JSONResponse({}, status_code=200)

    return r


def status_callback_url(settings: NotifierSettings) -> str | None:
    """The public URL Twilio posts statuses to (what it signs), from PUBLIC_BASE_URL."""
    base = settings.public_base_url.rstrip("/")
    return f"{base}/v1/twilio/status" if base else None


def _form(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as a dict ({} when it is not one)."""
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return {}


def _payload(body: bytes) -> SlackClick:
    """The JSON `payload` field of Slack's form body as a click; 400 naming what is wrong."""
    try:
        raw = parse_qs(body.decode(), strict_parsing=False).get("payload")
        payload = json.loads(raw[0]) if raw else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadSlackPayloadError("the form field `payload` is not JSON") from exc
    if not isinstance(payload, dict):
        raise BadSlackPayloadError("the form field `payload` must be a JSON object")
    try:
        return SlackClick.model_validate(payload)
    except ValidationError as exc:
        # Location and reason only: pydantic's input_value could echo what was sent.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
        )
        raise BadSlackPayloadError(f"the Slack payload is not a button click: {problems}") from exc


async def apply_slack_action(n: Notifier, click: SlackClick, request: Request) -> str:
    """Apply an Acknowledge / Escalate / Resolve click by a mapped agent; return what to say."""
    action = click.actions[0]
    alert_id, action_id = action.value, action.action_id
    agent = n.routing.agent_by_slack_user(click.user.id)
    if agent is None:
        log.info("slack_action_refused", reason="unmapped_user", action=action_id)
        return "You are not on the on-call roster, so this action was not applied."
    who = Who(id=agent.id, via="slack", agent=agent)
    try:
        if action_id == ACK_ACTION:
            await acknowledge(n, alert_id, who, tenant_id=None)
        elif action_id == ESCALATE_ACTION:
            await escalate(n, alert_id, who)
        elif action_id == RESOLVE_ACTION:
            await resolve(n, alert_id, who)
        else:
            return "Unknown action."
    except AlertNotFoundError:
        return "That alert does not exist any more."
    except AlertClosedError:
        return "That alert is already closed."
    except EscalationError as exc:
        return str(exc)
    await _audit_slack(request, agent, action_id, alert_id)
    return f"Done: {action_id.removeprefix('alert_')}."


async def _audit_slack(request: Request, agent: Agent, action_id: str, alert_id: str) -> None:
    record = AuditRecorded(
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        service="notifier",
        actor=AuditActor(type="slack", id=agent.slack_user_id),
        action=f"alert.{action_id.removeprefix('alert_')}",
        outcome="success",
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
        details={"alert_id": alert_id, "agent_id": agent.id},
    )
    try:
        await request.app.state.audit_sink.record(record)
    except Exception as exc:
        log.error("audit_record_failed", action=record.action, error=type(exc).__name__)


async def record_twilio_status(n: Notifier, outcomes: Outcomes, params: dict[str, str]) -> None:
    """Store a message's status; an undelivered message falls over to the person's next channel."""
    sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "")[:32]
    if not sid or not status:
        return

    async def work(tx: Tx) -> None:
        row = await deliveries.by_provider_ref(tx, sid)
        if row is None:
            return
        if not status_moves_forward(status, row.provider_status):
            log.info("twilio_status_ignored", status=status, stored=row.provider_status)
            return
        await deliveries.set_provider_status(tx, row.id, status)
        if status in UNDELIVERED and row.status == "sent":
            code = params.get("ErrorCode") or status
            await outcomes.undelivered(tx, row, code=f"twilio:{code}"[:64])

    await n.store.atomically(work)
    n.committed([])  # a fallback may have been queued
    log.info("twilio_status_recorded", status=status)
