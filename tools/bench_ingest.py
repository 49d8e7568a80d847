"""Batched ingest throughput: Garmin pushes holding a day of heart-rate samples each, and Health
Auto Export batches, posted to a real ingest subprocess on the embedded broker; readings/s counted
from the broker acknowledgements ingest reports (2xx bodies), each run also against a bare uvicorn
ceiling receiving the same bodies. `make bench-ingest` (python -m tools.bench_ingest).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from deploy.embedded_broker import free_port, start_tansu, stop_tansu
from tests.fakes.idp import FakeIdP

DAY_START = int((datetime.now(UTC) - timedelta(days=1)).timestamp()) // 86400 * 86400
GARMIN_ID = "bench-garmin-client"
TARGET_READINGS_PER_S = 20_000  # issue 3: batched payloads into Kafka


def garmin_day(user: str, day: int, step_s: int = 15) -> bytes:
    """One dailies push: a day of heart-rate samples every `step_s` seconds (5,760 at 15 s)."""
    start = DAY_START - day * 86400
    samples = {str(o): 60 + (o // step_s) % 40 for o in range(0, 86400, step_s)}
    record = {
        "userId": user,
        "summaryId": f"bench-{user}-{day}",
        "calendarDate": datetime.fromtimestamp(start, UTC).date().isoformat(),
        "startTimeInSeconds": start,
        "startTimeOffsetInSeconds": -10800,
        "durationInSeconds": 86400,
        "timeOffsetHeartRateSamples": samples,
    }
    return json.dumps({"dailies": [record]}).encode()


def hae_batch(n: int, batch: int) -> bytes:
    """A Health Auto Export document with `n` heart-rate points (one a minute)."""
    base = datetime.now(UTC) - timedelta(days=2 + batch)
    data = [
        {
            "date": (base + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S +0000"),
            "Min": 60,
            "Avg": 60 + i % 40,
            "Max": 100,
            "source": "Apple Watch",
        }
        for i in range(n)
    ]
    doc = {"data": {"metrics": [{"name": "heart_rate", "units": "count/min", "data": data}]}}
    return json.dumps(doc).encode()


async def _wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(60):
        while True:
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


async def _post_all(
    url: str, bodies: list[bytes], headers: dict[str, str], concurrency: int
) -> tuple[float, int, list[float], dict[str, int]]:
    """POST every body with `concurrency` clients; return wall time, readings accepted, latencies
    and the refused requests by status and error code (a refused body's readings do not count)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    accepted = 0
    latencies: list[float] = []
    refused: dict[str, int] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            r = await client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if r.status_code >= 300:
                code = r.json().get("error", {}).get("code", "?") if r.content else "?"
                refused[f"{r.status_code} {code}"] = refused.get(f"{r.status_code} {code}", 0) + 1
                continue
            accepted += int(r.json().get("accepted", 0))

    async with httpx.AsyncClient(timeout=120) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - t0, accepted, latencies, refused


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _commit() -> str:
    """Short commit of the working tree, '+uncommitted' when it has changes."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return (git("rev-parse", "--short", "HEAD") or "?") + (
        "+uncommitted" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    return subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start broker, IdP, ingest and the ceiling; post the batches; return the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    port = free_port()
    tansu = start_tansu(port, quiet=True)
    idp = FakeIdP(audience="vitals-alerting").start()
    ingest_port, ceiling_port = free_port(), free_port()
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        KAFKA_FETCH_MAX_WAIT_MS="20",
        CONSENT_REQUIRED="false",
        AUTH_JWKS_URL=idp.jwks_url,
        AUTH_ISSUER=idp.issuer,
        AUTH_AUDIENCE=idp.audience,
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "INFO"),  # the default: a line per request
        INGEST_PORT=str(ingest_port),
        INGEST_DATABASE_URL=f"sqlite:///{tmp}/ingest.db",
        GARMIN_CLIENT_ID=GARMIN_ID,
    )
    procs = [
        _spawn([sys.executable, "-m", "services.ingest"], env, tmp / "ingest.log"),
        _spawn(
            [sys.executable, "-m", "tools.bench_ceiling", str(ceiling_port)], env, tmp / "c.log"
        ),
    ]
    try:
        ingest = f"http://127.0.0.1:{ingest_port}"
        ceiling = f"http://127.0.0.1:{ceiling_port}"
        await _wait_ready(ingest)
        await _wait_ready(ceiling)
        admin = {"Authorization": "Bearer " + idp.mint(now=int(time.time()), scope="admin")}
        async with httpx.AsyncClient(headers=admin) as client:
            for u in range(args.users):
                r = await client.post(
                    f"{ingest}/v1/connections",
                    json={"vendor": "garmin", "vendor_user_id": f"g{u}", "patient_id": f"pt-g{u}"},
                )
                r.raise_for_status()
            r = await client.post(
                f"{ingest}/v1/connections", json={"vendor": "apple_health", "patient_id": "pt-a"}
            )
            device_key = r.json()["device_key"]
        garmin = [garmin_day(f"g{i % args.users}", i // args.users) for i in range(args.pushes)]
        hae = [hae_batch(args.hae_points, i) for i in range(args.hae_batches)]
        gh = {"garmin-client-id": GARMIN_ID, "Content-Type": "application/json"}
        ah = {"Authorization": f"Bearer {device_key}", "Content-Type": "application/json"}
        figures: dict[str, Any] = {}
        for name, url, bodies, headers in (
            ("garmin_dailies", "/v1/webhooks/garmin/dailies", garmin, gh),
            ("health_auto_export", "/v1/webhooks/apple-health", hae, ah),
        ):
            cpu_before = _cpu_s(procs[0].pid)
            wall, accepted, lat, refused = await _post_all(
                ingest + url, bodies, headers, args.concurrency
            )
            cpu = _cpu_s(procs[0].pid) - cpu_before
            c_wall, _, _, _ = await _post_all(
                ceiling + "/v1/readings", bodies, headers, args.concurrency
            )
            lat.sort()
            figures[name] = {
                "requests": len(bodies),
                "readings_accepted": accepted,
                "requests_refused": refused,
                "wall_s": round(wall, 2),
                "readings_per_s": round(accepted / wall),
                "p50_request_ms": round(lat[len(lat) // 2] * 1000, 1),
                "p99_request_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
                "ceiling_wall_s": round(c_wall, 3),
                "ratio_to_ceiling": round(c_wall / wall, 3),
                # CPU time of the ingest process per accepted reading: comparable across runs
                # on a loaded machine, where readings/s is not
                "ingest_cpu_us_per_reading": round(cpu / max(accepted, 1) * 1e6, 1),
                "target_met": not refused and accepted / wall >= TARGET_READINGS_PER_S,
            }
        return figures
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        idp.stop()
        stop_tansu(tansu)


def main() -> None:
    """Parse arguments, run, print figures as JSON and a Markdown line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pushes", type=int, default=40, help="Garmin day pushes (5,760 samples)")
    parser.add_argument("--users", type=int, default=8, help="Garmin users (connections)")
    parser.add_argument("--hae-batches", type=int, default=40)
    parser.add_argument("--hae-points", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    print(json.dumps(figures, indent=2))
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}, "
        f"commit {_commit()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; target "
        f"≥ {TARGET_READINGS_PER_S:,} readings/s accepted per vendor path"
    )


if __name__ == "__main__":
    main()
