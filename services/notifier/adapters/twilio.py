"""Twilio Programmable Messaging adapter: SMS and WhatsApp through the Messages resource.

Docs: https://www.twilio.com/docs/messaging/api/message-resource,
https://www.twilio.com/docs/api/errors, https://www.twilio.com/docs/usage/security

Twilio documents no idempotency header for creating a Message (`I-Twilio-Idempotency-Token` is one
Twilio *sends* on its webhooks), so a retried send after a lost answer can deliver twice.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import structlog
from twilio.request_validator import RequestValidator

from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from services.notifier.ports import Channel, Delivery, Receipt

log = structlog.get_logger(__name__)

TWILIO_API_BASE_URL = "https://api.twilio.com"
# Codes the Messages API answers that say the recipient itself must not be tried again on this
# channel: 21211 invalid To, 21610 recipient replied STOP (unsubscribed), 21614 To not a mobile
# number, 21635 To is a landline (the address is disabled per channel: WhatsApp is unaffected).
RECIPIENT_DEAD_CODES = frozenset({21211, 21610, 21614, 21635})
# Other permanent refusals seen on send are about our account or request, not the recipient:
# 20003 authenticate, 21408 region not enabled, 21602/21603/21604 Body/From/To missing, 21606 From
# not SMS-capable, 21608 unverified To (trial: fixed by verifying it), 21612 unroutable From/To
# pair, 21910 From/To channel mismatch, 63016 WhatsApp outside the 24 h session window (a later
# message may be inside it).
# Every 4xx but a rate limit is permanent: Twilio keeps 4xx for requests that will never succeed.
RATE_LIMIT_CODES = frozenset({20429})
RATE_LIMIT_DEFAULT_S = 1.0  # a 429 without Retry-After: wait a second at least
WHATSAPP_PREFIX = "whatsapp:"
# Where each MessageStatus stands in a message's life: status callbacks arrive out of order, and a
# late one (a `sent` after `delivered`) must not move the stored status back. `read`: WhatsApp.
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}


class TwilioMessageSender:
    """Send SMS or WhatsApp messages from one sender; provider_ref is the Message SID (SM...)."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        channel: Channel,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = TWILIO_API_BASE_URL,
        status_callback: str | None = None,
    ) -> None:
        if channel not in (Channel.SMS, Channel.WHATSAPP):
            raise ValueError(f"Twilio sends SMS or WhatsApp, not {channel.value}")
        self.channel: Channel = channel
        self._client = client
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._from = self._address(from_number)
        self._status_callback = status_callback

    def _address(self, number: str) -> str:
        """An E.164 number as Twilio wants it on this channel (`whatsapp:+...` for WhatsApp)."""
        bare = number.removeprefix(WHATSAPP_PREFIX)
        return WHATSAPP_PREFIX + bare if self.channel is Channel.WHATSAPP else bare

    async def send(self, delivery: Delivery) -> Receipt:
        """Create the Message; raise Permanent/TransientDeliveryError as Twilio's answer says."""
        form = {"To": self._address(delivery.recipient), "From": self._from, "Body": delivery.text}
        if self._status_callback:
            form["StatusCallback"] = self._status_callback
        started = time.perf_counter()
        try:
            response = await self._client.post(self._url, data=form, auth=self._auth)
        except httpx.HTTPError as exc:
            log.warning("twilio_unreachable", channel=self.channel.value, error=type(exc).__name__)
            raise TransientDeliveryError(f"twilio unreachable: {type(exc).__name__}") from exc
        if response.status_code in (200, 201):
            sid = _json(response).get("sid")
            if isinstance(sid, str) and sid:
                log.info("twilio_message_created", channel=self.channel.value, status="queued")
                return Receipt(provider_ref=sid, latency_s=time.perf_counter() - started)
        raise self._failure(response)

    def _failure(self, response: httpx.Response) -> PermanentDeliveryError | TransientDeliveryError:
        """Classify Twilio's error body {"code", "message", "more_info", "status"}."""
        status = response.status_code
        code = _json(response).get("code")
        code_text = str(code) if code is not None else f"http_{status}"
        log.warning(
            "twilio_delivery_failed", channel=self.channel.value, status=status, code=code_text
        )
        if status == 429 or code in RATE_LIMIT_CODES:
            # Always a delay, so the retry is known as a rate limit (it uses up no attempt).
            retry_after = _seconds(response.headers.get("Retry-After")) or RATE_LIMIT_DEFAULT_S
            return TransientDeliveryError("twilio rate limited", retry_after_s=retry_after)
        if status >= 500 or status < 400:
            return TransientDeliveryError(f"twilio answered HTTP {status} ({code_text})")
        return PermanentDeliveryError(
            f"twilio refused: {code_text}",
            code=code_text,
            disable_recipient=code in RECIPIENT_DEAD_CODES,
        )


def status_moves_forward(new: str, stored: str | None) -> bool:
    """Whether a callback's MessageStatus may replace the stored one (never a step back; an
    unknown status only when nothing known is stored)."""
    if stored is None:
        return True
    return STATUS_RANK.get(new, -1) > STATUS_RANK.get(stored, -1)


def _json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object Twilio answered, or {} when it answered something else."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _seconds(value: str | None) -> float | None:
    """Parse a Retry-After header given in seconds; None when absent or not a number."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def verify_twilio_signature(
    *, auth_token: str, url: str, params: dict[str, str], signature: str
) -> bool:
    """Return True when X-Twilio-Signature signs this URL and form params (HMAC-SHA1, base64)."""
    if not auth_token or not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, params, signature))
