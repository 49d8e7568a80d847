"""Run a service's ASGI app with uvicorn and the shared logging setup."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from shared.logging import configure_logging
from shared.settings import ServiceSettings


def serve(*, service: str, settings: ServiceSettings, port: int, app: FastAPI) -> None:
    """Configure logging and serve until SIGINT/SIGTERM (uvicorn drains, then the lifespan stops)."""
    key = settings.log_redaction_key
    configure_logging(
        service=service,
        level=settings.log_level,
        fmt=settings.log_format,
        redaction_key=key.get_secret_value().encode() if key else None,
    )
    uvicorn.run(
        app,
        host=settings.bind_host,
        port=port,
        # Named rather than "auto": a missing extra fails loudly instead of silently serving on
        # asyncio's own loop and the pure-Python h11 parser.
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
