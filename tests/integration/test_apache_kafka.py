"""The thin path against a real Apache Kafka broker in Docker (testcontainers).

The embedded Tansu broker is what `make run` and CI use; production runs Apache Kafka. Where a Docker
engine answers, this proves the same pipeline on the real thing. Without one it is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.slack import FakeSlack
from tests.integration.test_thin_path import _idp, red_then_normal  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def docker_unavailable_reason() -> str | None:
    """Return why Docker cannot be used here, or None when an engine answers."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # any failure means: no usable engine
        return f"no Docker engine answers ({type(exc).__name__}); Apache Kafka test needs Docker"
    return None


@pytest.fixture(scope="module")
def apache_kafka() -> Iterator[str]:
    reason = docker_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.0") as kafka:
        yield kafka.get_bootstrap_server()


async def test_thin_path_on_apache_kafka(apache_kafka: str, fake_slack: FakeSlack) -> None:
    await red_then_normal(apache_kafka, fake_slack)
