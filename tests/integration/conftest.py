"""Real servers for integration tests: an Apache Kafka broker for the whole session.

Where ``SW_TEST_BOOTSTRAP`` names a broker, it is used; where a Docker engine
answers, testcontainers' Kafka module starts one; otherwise Apache Kafka's own jars,
fetched from Maven Central, run with the machine's Java (tests/kafka_local.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient

from tests.kafka_local import Broker

pytestmark = pytest.mark.integration


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """The bootstrap address of a running Kafka broker."""
    existing = os.environ.get("SW_TEST_BOOTSTRAP")
    if existing:
        yield existing
    elif _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
    else:
        broker = Broker().start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


@pytest.fixture
def topics(kafka: str) -> Callable[[int], list[str]]:
    """Makes fresh single-partition topics for one test."""

    def make(count: int) -> list[str]:
        names = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(count)]
        admin = KafkaAdminClient(bootstrap_servers=kafka)
        try:
            admin.create_topics(
                {name: {"num_partitions": 1, "replication_factor": 1} for name in names}
            )
        finally:
            admin.close()
        return names

    return make
