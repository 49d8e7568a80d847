"""Console sink: the embedded default when no provider is configured (`make run` out of the box)."""

from __future__ import annotations

import itertools
import sys
from typing import TextIO

from services.notifier.ports import Channel, Delivery, Receipt

_ANSI = {"red": "\x1b[1;31m", "yellow": "\x1b[1;33m"}


class ConsoleChannelSender:
    """Print each message as one line on stdout; addresses are masked, never printed whole."""

    def __init__(self, channel: Channel, stream: TextIO | None = None) -> None:
        self.channel = channel
        self._stream = stream or sys.stdout
        self._seq = itertools.count(1)

    async def send(self, delivery: Delivery) -> Receipt:
        """Write the message line."""
        n = next(self._seq)
        verb = "update" if delivery.update_ref else "reply" if delivery.thread_ref else "message"
        colour = next((c for k, c in _ANSI.items() if k.upper() in delivery.text), "")
        colour = colour if self._stream.isatty() else ""
        reset = "\x1b[0m" if colour else ""
        to = _mask(self.channel, delivery.recipient)
        line = f"[ALERT {self.channel.value} {verb} to {to}] {delivery.text}"
        self._stream.write(f"{colour}{line}{reset}\n")
        self._stream.flush()
        ref = delivery.update_ref or f"CONSOLE:{n}"
        return Receipt(provider_ref=ref, latency_s=0.0)


def _mask(channel: Channel, recipient: str) -> str:
    """Slack channels as they are; phone numbers and push tokens cut to a hint."""
    if channel is Channel.SLACK:
        return recipient
    return f"…{recipient[-2:]}" if channel is not Channel.PUSH else f"{recipient[:6]}…"
