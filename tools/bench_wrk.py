"""Phase B: single-reading POST /v1/readings throughput with wrk, against ingest and a ceiling.

The Lua script posts one green heart rate (70 /min) per request for a fresh patient id
(bench-<run>-wrk-<thread>-<n>), so ingest publishes every request and rules evaluates it, but no
alert (and no Slack call) follows. Every request carries the same bearer token (readings:write),
so ingest validates a signature per request, as it would for a real client reusing its token.
Its done() hook prints the summary as one JSON line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

WRK_MARKER = "WRK_JSON "
WRK_GRACE_S = 30.0

LUA_TEMPLATE = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer __TOKEN__"
local prefix = "__PREFIX__"
local measured_at = "__MEASURED_AT__"
local next_thread = 0
local counter = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"readings":[{"patient_id":"%s-%d-%d","metric":"heart_rate","value":70.0,' ..
    '"unit":"/min","measured_at":"%s","source":"bench"}]}',
    prefix, tid, counter, measured_at)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '__MARKER__{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"non_2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


class WrkMissingError(RuntimeError):
    """wrk is not on PATH."""


@dataclass(frozen=True)
class WrkSettings:
    """The wrk command line, identical for ingest and the ceiling."""

    threads: int
    connections: int
    duration_s: int

    def argv(self, script: Path, url: str) -> list[str]:
        """Full wrk command."""
        return [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{self.duration_s}s",
            "-s",
            str(script),
            url,
        ]

    def display(self, url: str) -> str:
        """The command as shown in the report."""
        return " ".join(self.argv(Path("post_reading.lua"), url))


@dataclass(frozen=True)
class WrkResult:
    """wrk's summary of one run."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def requests_per_s(self) -> float:
        """Requests answered without an HTTP error (wrk counts status >= 400 as one) per second:
        a 503 answered fast is no throughput."""
        ok = self.requests - self.errors.get("non_2xx", 0)
        return ok / self.duration_s if self.duration_s else 0.0


def require_wrk() -> str:
    """Return wrk's version line, or raise a message that says how to install it."""
    if shutil.which("wrk") is None:
        raise WrkMissingError(
            "wrk is not installed: `apt-get install -y wrk` (Debian package wrk), "
            "or run `make bench`, which installs it when it can"
        )
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).splitlines()[0].split(" [")[0].strip()


def write_script(directory: Path, run_id: str, token: str) -> Path:
    """Write the Lua script for this run (every request sends `token`) and return its path."""
    script = (
        LUA_TEMPLATE.replace("__PREFIX__", f"bench-{run_id}-wrk")
        .replace("__TOKEN__", token)
        .replace("__MEASURED_AT__", datetime.now(UTC).isoformat())
        .replace("__MARKER__", WRK_MARKER)
    )
    path = directory / "post_reading.lua"
    path.write_text(script)
    return path


def parse_summary(stdout: str) -> WrkResult:
    """Read the JSON line the script's done() printed."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(WRK_MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{stdout}")
    raw = json.loads(line.removeprefix(WRK_MARKER))
    errors = {k: int(raw[k]) for k in ("non_2xx", "connect", "read", "write", "timeout")}
    return WrkResult(
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
        errors={k: v for k, v in errors.items() if v},
    )


def run_wrk(settings: WrkSettings, script: Path, url: str) -> WrkResult:
    """Run wrk once (bounded: its duration plus a grace period) and return its summary."""
    completed = subprocess.run(
        settings.argv(script, url),
        capture_output=True,
        text=True,
        timeout=settings.duration_s + WRK_GRACE_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse_summary(completed.stdout)
