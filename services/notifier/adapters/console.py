"""Console sink: the embedded default when no Slack token is configured."""

from __future__ import annotations

import sys
from typing import TextIO

from services.notifier.domain import summary_text
from shared.events import AlertEvent

_EMOJI = {"red": "\U0001f534", "yellow": "\U0001f7e1", "green": "\U0001f7e2"}
_ANSI = {"red": "\x1b[1;31m", "yellow": "\x1b[1;33m", "green": "\x1b[1;32m"}


class ConsoleAlertSender:
    """Print each alert as one line on stdout: the same content Slack would get."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    async def send_alert(self, event: AlertEvent) -> None:
        """Write the alert line."""
        colour = _ANSI[event.severity.value] if self._stream.isatty() else ""
        reset = "\x1b[0m" if colour else ""
        emoji = _EMOJI[event.severity.value]
        self._stream.write(f"{colour}[ALERT {emoji}] {summary_text(event)}{reset}\n")
        self._stream.flush()
