"""Run a provider fake's ASGI app with uvicorn in a background thread on a loopback port."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from deploy.embedded_broker import free_port


class ThreadedServer:
    """Start/stop an ASGI app on 127.0.0.1 in a daemon thread (fakes used by sync and async code)."""

    def __init__(self, app: Any, *, name: str, port: int = 0) -> None:
        self.port = port or free_port()
        self._name = name
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> None:
        """Serve, returning once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fake {self._name} did not start")
            time.sleep(0.01)  # startup poll of another thread, bounded by the deadline

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
