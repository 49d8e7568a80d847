"""A bad GOOGLE_HEALTH_PUBLIC_KEY_FILE stops ingest at startup (exit 2, naming the variable),
instead of failing every Google Health webhook with a 500."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[3]


def start_ingest(tmp_path: Path, key_file: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GOOGLE_HEALTH_PUBLIC_KEY_FILE": str(key_file),
        "INGEST_DATABASE_URL": f"sqlite:///{tmp_path}/ingest.db",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.ingest"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def p384_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot be read"), (b"not a key", "not a PEM"), (p384_pem(), "P-256")],
    ids=["missing", "not-pem", "wrong-curve"],
)
def test_a_bad_google_public_key_file_stops_ingest_naming_the_variable(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    key_file = tmp_path / "google.pem"
    if content is not None:
        key_file.write_bytes(content)
    done = start_ingest(tmp_path, key_file)
    assert done.returncode == 2, done.stderr
    assert "GOOGLE_HEALTH_PUBLIC_KEY_FILE" in done.stderr and problem in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
