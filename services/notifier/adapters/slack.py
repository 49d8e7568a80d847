"""Slack Web API adapter: chat.postMessage, thread replies and chat.update over httpx.

Docs: https://api.slack.com/methods/chat.postMessage, https://api.slack.com/methods/chat.update,
https://api.slack.com/authentication/verifying-requests-from-slack
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import structlog
from slack_sdk.signature import Clock, SignatureVerifier

from services.notifier.domain import slack_message
from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from services.notifier.ports import Channel, Delivery, Receipt
from shared.events import AlertEvent

log = structlog.get_logger(__name__)

# Slack answers HTTP 200 with {"ok": false, "error": ...}; these errors will not heal by retrying.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_arguments",
        "restricted_action",
        "invalid_arg_name",
        "too_many_attachments",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "thread_not_found",
    }
)
# Keys of Delivery.slack passed on; anything else (channel, ts, thread_ts) is the adapter's to set.
POST_KEYS = ("blocks", "attachments", "unfurl_links", "unfurl_media")
UPDATE_KEYS = ("blocks", "attachments")


class SlackChannelSender:
    """Post, thread or update Slack messages with a bot token; provider_ref is "CHANNELID:ts"."""

    channel = Channel.SLACK

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        token: str,
        timeout_s: float | None = None,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._token = token
        # SLACK_TIMEOUT_S; None keeps the shared client's timeout (PROVIDER_TIMEOUT_S).
        self._timeout: Any = (
            httpx.Timeout(timeout_s) if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        )

    async def send(self, delivery: Delivery) -> Receipt:
        """Post the message, reply in its thread (thread_ref) or edit it in place (update_ref)."""
        method, body = _request(delivery)
        started = time.perf_counter()
        try:
            response = await self._client.post(
                f"{self._base_url}/{method}",
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            log.warning("slack_unreachable", channel=self.channel.value, error=type(exc).__name__)
            raise TransientDeliveryError(f"slack unreachable: {type(exc).__name__}") from exc
        payload = _check(response)
        ref = f"{payload.get('channel', body['channel'])}:{payload['ts']}"
        log.info("slack_message_sent", channel=self.channel.value, method=method)
        return Receipt(provider_ref=ref, latency_s=time.perf_counter() - started)


def _request(delivery: Delivery) -> tuple[str, dict[str, Any]]:
    """Pick the Web API method and build its JSON body."""
    extra = delivery.slack or {}
    if delivery.update_ref:
        channel_id, ts = split_ref(delivery.update_ref)
        body = {"channel": channel_id, "ts": ts, "text": delivery.text}
        return "chat.update", body | {k: extra[k] for k in UPDATE_KEYS if k in extra}
    body = {"channel": delivery.recipient, "text": delivery.text}
    if delivery.thread_ref:
        # A reply lives in its parent's channel, whatever name the recipient was given as.
        body["channel"], body["thread_ts"] = split_ref(delivery.thread_ref)
    return "chat.postMessage", body | {k: extra[k] for k in POST_KEYS if k in extra}


def split_ref(provider_ref: str) -> tuple[str, str]:
    """Split a "CHANNELID:ts" provider_ref into (channel id, ts)."""
    channel_id, sep, ts = provider_ref.partition(":")
    if not sep or not channel_id or not ts:
        raise PermanentDeliveryError("malformed slack reference", code="invalid_ref")
    return channel_id, ts


def _check(response: httpx.Response) -> dict[str, Any]:
    """Return Slack's ok=true answer, or raise the error class the failure belongs to."""
    status = response.status_code
    if status == 429:
        # Slack always sends Retry-After; without one wait a second (its rate is 1 msg/s).
        retry_after = _seconds(response.headers.get("Retry-After")) or 1.0
        log.warning("slack_rate_limited", channel="slack", status=status, retry_after_s=retry_after)
        raise TransientDeliveryError("slack rate limited", retry_after_s=retry_after)
    if status >= 500:
        log.warning("slack_delivery_failed", channel="slack", status=status)
        raise TransientDeliveryError(f"slack answered HTTP {status}")
    try:
        payload = response.json()
    except ValueError as exc:
        raise TransientDeliveryError("slack answered a non-JSON body") from exc
    if not isinstance(payload, dict):  # a proxy's or gateway's answer, not the Web API's
        log.warning("slack_delivery_failed", channel="slack", status=status, code="not_an_object")
        raise TransientDeliveryError("slack answered JSON that is not a JSON object")
    if status == 200 and payload.get("ok") and isinstance(payload.get("ts"), str):
        return payload
    error = str(payload.get("error") or f"http_{status}")
    log.warning("slack_delivery_failed", channel="slack", status=status, code=error)
    if error in PERMANENT_ERRORS or 400 <= status < 500:
        raise PermanentDeliveryError(f"slack refused: {error}", code=error)
    raise TransientDeliveryError(f"slack error: {error}")


def _seconds(value: str | None) -> float | None:
    """Parse a Retry-After header given in seconds; None when absent or not a number."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        """The instant the caller fixed."""
        return self._now


def verify_slack_request(
    *, signing_secret: str, timestamp: str | None, body: bytes, signature: str | None, now: float
) -> bool:
    """Return True when a Slack request is signed with the secret (v0) and at most 5 minutes old."""
    try:
        verifier = SignatureVerifier(signing_secret, clock=_FixedClock(now))
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except ValueError:  # empty secret, non-numeric timestamp, body that is not UTF-8
        return False


class SlackChatSender:
    """AlertSender kept for the composition root: one channel, Block Kit, via SlackChannelSender.

    A 429 now raises TransientDeliveryError (retried by the consumer) instead of sleeping here.
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        token: str,
        channel: str,
        dashboard_url: str,
    ) -> None:
        self._sender = SlackChannelSender(client=client, base_url=base_url, token=token)
        self._channel = channel
        self._dashboard_url = dashboard_url

    async def send_alert(self, event: AlertEvent) -> None:
        """Post the alert to the configured channel; classify every failure."""
        body = slack_message(event, channel=self._channel, dashboard_url=self._dashboard_url)
        await self._sender.send(
            Delivery(
                idempotency_key=event.event_id,
                channel=Channel.SLACK,
                recipient=self._channel,
                text=body["text"],
                slack={k: body[k] for k in POST_KEYS if k in body},
            )
        )
