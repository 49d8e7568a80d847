"""structlog setup: JSON logs, contextvars, and a redaction processor that runs just before rendering."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

# Keys whose values never reach a log line. Patient ids are replaced by a keyed hash instead so an
# operator can still correlate lines about one patient without learning who it is.
REDACTED_KEYS = frozenset(
    {
        "value",
        "values",
        "reading",
        "readings",
        "name",
        "full_name",
        "phone",
        "phone_number",
        "whatsapp",
        "email",
        "cpf",
        "address",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "password",
        "secret",
        "client_secret",
        "body",
        "payload",
        "text",
        "blocks",
        "contact",
        "push_token",
        "device_key",
        "birth_date",
    }
)
PSEUDONYMIZED_KEYS = frozenset({"patient_id", "patient", "subject"})
REDACTED = "[redacted]"


class Redactor:
    """structlog processor: drop sensitive values and pseudonymize patient ids, recursively."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def patient_ref(self, patient_id: str) -> str:
        """Return a stable, non-reversible reference for a patient id (keyed BLAKE2/HMAC)."""
        digest = hmac.new(self._key, patient_id.encode(), hashlib.sha256).hexdigest()
        return f"pref_{digest[:16]}"

    def _clean(self, key: str, value: Any) -> Any:
        lowered = key.lower()
        if lowered in REDACTED_KEYS:
            return REDACTED
        if lowered in PSEUDONYMIZED_KEYS and value is not None:
            return self.patient_ref(str(value))
        if isinstance(value, Mapping):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        return value

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Redact one log event."""
        for key in list(event_dict):
            if key != "event":
                event_dict[key] = self._clean(key, event_dict[key])
        return event_dict


def configure_logging(
    *, service: str, level: str = "INFO", fmt: str = "json", redaction_key: bytes | None = None
) -> None:
    """Configure structlog and route stdlib logging (uvicorn, aiokafka) through the same pipeline."""
    redactor = Redactor(redaction_key)
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    handler = logging.StreamHandler(sys.stdout)
    # Our own events skip the stdlib machinery (a LogRecord, a handler chain and a formatter that
    # re-runs the processors cost ~80 us a line, a line per request): filtered by level in the
    # bound logger, processed once and written as the same line to the same stream.
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            _bind_service(service),
            redactor,
            renderer,
        ],
        logger_factory=lambda *args: _LineLogger(handler, str(args[0]) if args else ""),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared_processors, structlog.processors.format_exc_info],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _bind_service(service),
            redactor,
            renderer,
        ],
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs carry raw paths (which may hold patient ids); our middleware logs route templates.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


class _LineLogger:
    """structlog's output: a rendered line on the stdlib handler's stream, under its lock."""

    def __init__(self, handler: logging.StreamHandler[Any], name: str) -> None:
        self._handler = handler
        self.name = name  # add_logger_name reads it

    def msg(self, line: str) -> None:
        """Write one rendered line."""
        handler = self._handler
        handler.acquire()
        try:
            handler.stream.write(line + "\n")
            handler.stream.flush()
        finally:
            handler.release()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _bind_service(service: str) -> Any:
    def processor(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor
