"""The README's `make run`: broker + four services under honcho, an alert on the console, Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from deploy.embedded_broker import free_port, port_open
from shared.devauth import issue_dev_token, load_or_create_dev_key

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "rules", "notifier", "consent")


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """Feed the process's output lines into a queue from a reader thread."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return out


def wait_line(lines: queue.Queue[str], needle: str, seen: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not seen within {timeout}s; output:\n{''.join(seen[-40:])}")


def ready(client: httpx.Client, port: int) -> bool:
    try:
        return client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except httpx.ConnectError:
        return False


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, int], str]]:
    ports = {name: free_port() for name in [*SERVICES, "broker"]}
    key_file = str(tmp_path / "dev-signing-key.json")
    load_or_create_dev_key(key_file)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['broker']}",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        "DATABASE_URL": f"sqlite:///{tmp_path}/consent.db",
        "RULES_DATABASE_URL": f"sqlite:///{tmp_path}/rules.db",
        "DEV_AUTH_KEY_FILE": key_file,
        "AUDIT_SIGNING_KEY_FILE": str(tmp_path / "audit.key"),
        **{f"{name.upper()}_PORT": str(ports[name]) for name in SERVICES},
    }
    env.pop("SLACK_BOT_TOKEN", None)  # the embedded default: console sink
    proc = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc, ports, key_file
    finally:
        if proc.poll() is None:  # the test failed midway: stop it the way Ctrl-C does first,
            os.killpg(proc.pid, signal.SIGINT)  # so honcho takes its children down with it
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def dev_headers(key_file: str) -> dict[str, str]:
    token = issue_dev_token(
        key=load_or_create_dev_key(key_file),
        issuer="http://127.0.0.1:8004/dev-idp",
        audience="vitals-alerting",
        scopes=["readings:write", "consent:write"],
    )
    return {"Authorization": f"Bearer {token}"}


def grant_monitoring(client: httpx.Client, port: int, patient: str) -> None:
    response = client.post(
        f"http://127.0.0.1:{port}/v1/patients/{patient}/consents",
        json={
            "purpose": "monitoring",
            "notice_version": "v1",
            "performer": {"type": "patient", "reference": "app-user"},
            "evidence": {"type": "app-checkbox", "reference": "r-1"},
        },
    )
    assert response.status_code == 201, response.text


def test_make_run_shows_a_red_alert_and_stops_cleanly_on_ctrl_c(
    make_run: tuple[subprocess.Popen[str], dict[str, int], str],
) -> None:
    proc, ports, key_file = make_run
    lines, seen = lines_of(proc), []
    wait_line(lines, "embedded broker (Tansu, memory engine", seen, timeout=60)
    deadline = time.monotonic() + 60
    with httpx.Client(headers=dev_headers(key_file)) as client:
        for name in SERVICES:
            while not ready(client, ports[name]):
                assert time.monotonic() < deadline, f"{name} not ready"
                time.sleep(0.1)
        now = datetime.now(UTC)
        episode = [  # sustained: three readings above 120 /min over 60 s
            {
                "patient_id": "pt-make-run",
                "metric": "heart_rate",
                "value": 130,
                "unit": "/min",
                "measured_at": (now - timedelta(seconds=back)).isoformat(),
                "source": "demo",
            }
            for back in (60, 30, 0)
        ]
        grant_monitoring(client, ports["consent"], "pt-make-run")
        # The grant reaches ingest through consent.v1; until then the reading is withheld.
        while "ingest" not in wait_line(lines, "consent_view_updated", seen, timeout=5):
            pass
        response = client.post(
            f"http://127.0.0.1:{ports['ingest']}/v1/readings", json={"readings": episode}
        )
    assert response.status_code == 202
    alert = wait_line(lines, "[ALERT", seen, timeout=5)
    assert "notifier" in alert and "RED" in alert and "pt-make-run" in alert
    # Log lines never name the patient: only the console sink (standing in for Slack) does.
    assert not [line for line in seen if "pt-make-run" in line and "[ALERT" not in line]

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    assert proc.wait(timeout=30) is not None
    for port in ports.values():
        assert not port_open("127.0.0.1", port), f"port {port} still served after Ctrl-C"
