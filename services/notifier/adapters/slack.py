"""Slack Web API adapter: chat.postMessage over httpx."""

from __future__ import annotations

import asyncio

import httpx
import structlog

from services.notifier.domain import slack_message
from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
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
    }
)
MAX_RETRY_AFTER_S = 30.0
RATE_LIMIT_ATTEMPTS = 3


class SlackChatSender:
    """Post alerts to one channel with a bot token; honours 429 Retry-After."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        token: str,
        channel: str,
        dashboard_url: str,
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/chat.postMessage"
        self._token = token
        self._channel = channel
        self._dashboard_url = dashboard_url

    async def send_alert(self, event: AlertEvent) -> None:
        """Post the alert; retry 429s within the call, classify every other failure."""
        body = slack_message(event, channel=self._channel, dashboard_url=self._dashboard_url)
        headers = {"Authorization": f"Bearer {self._token}"}
        for _ in range(RATE_LIMIT_ATTEMPTS):
            try:
                response = await self._client.post(self._url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                raise TransientDeliveryError(f"slack unreachable: {type(exc).__name__}") from exc
            if response.status_code == 429:
                wait = min(float(response.headers.get("Retry-After", "1")), MAX_RETRY_AFTER_S)
                log.warning("slack_rate_limited", retry_after_s=wait)
                await asyncio.sleep(wait)
                continue
            self._check(response)
            return
        raise TransientDeliveryError("slack kept rate limiting")

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code >= 500:
            raise TransientDeliveryError(f"slack answered HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise TransientDeliveryError("slack answered a non-JSON body") from exc
        if response.status_code != 200 or not payload.get("ok"):
            error = str(payload.get("error", f"http_{response.status_code}"))
            if error in PERMANENT_ERRORS or 400 <= response.status_code < 500:
                raise PermanentDeliveryError(f"slack refused: {error}")
            raise TransientDeliveryError(f"slack error: {error}")
