"""The broker SIGKILLed mid-stream and started again on its data directory, five times:
the daemon never exits, stays live while the broker is away, and ends where an
uninterrupted run ends (the same windows with the same statistics, the same
notifications, each delivered once). Compared with test_restarts.py's uninterrupted
run over the same stream (imported with its fixtures)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import create_topic, produce_bulk
from tests.integration.test_restarts import (
    Deployment,
    assert_same_results,
    deployments,
    live,
    stopped,
    stream,
    topic,
    uninterrupted,
)
from tests.kafka_local import Broker

pytestmark = pytest.mark.integration
__all__ = ["deployments", "stream", "topic", "uninterrupted"]  # fixtures, used by name

KILLS = 5
DOWN = 2.0  # seconds the broker stays dead, besides the time it takes to start again


@pytest.fixture
def mortal_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test alone, to kill and start again."""
    if shutil.which("java") is None:
        pytest.skip("a broker of the test's own runs on a local Java")
    # Started again, the broker waits for the controller to let its previous life's
    # session expire (9 s by default) before it serves: 2 s keeps each cycle short.
    quick = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "500"}
    broker = Broker(tmp_path / "kafka", properties=quick).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_the_broker_killed_and_restarted_five_times_the_daemon_ends_as_if_never_interrupted(
    mortal_broker: Broker,
    stream: list[bytes],
    uninterrupted: Deployment,
    deployments: Callable[[str, str], Deployment],
    client: str,
) -> None:
    kafka = mortal_broker.bootstrap
    topic = create_topic(kafka)
    produce_bulk(kafka, topic, stream)
    deployment = deployments(kafka, topic)
    with deployment.env.open("a") as env:
        env.write(f"STREAMWATCH_KAFKA__CLIENT={client}\n")
    end = len(stream)
    daemon = deployment.start()

    def running() -> None:
        assert daemon.process is not None
        assert daemon.process.poll() is None, "the daemon exited"

    for k in range(KILLS):
        # One kill in each of five spans of the stream, once the daemon has committed
        # into it (after the previous restart: it is reading again).
        deployment.wait_until_past(int(end * (0.1 + 0.15 * k)))
        mortal_broker.kill()
        gone = time.monotonic()
        while time.monotonic() - gone < DOWN:
            running()
            assert live(daemon)  # waiting on Kafka is no reason to be restarted
            time.sleep(0.5)
        mortal_broker.restart()
        running()
        assert deployment.committed() < end  # each kill came mid-stream

    deployment.wait_until_committed(end)
    running()
    assert daemon.stop() == 0
    # Every line a JSON log line (no traceback on stderr), none of ours with an exception;
    # kafka-python's own lines may carry one (a connection reset by the dying broker).
    lines = daemon.log_path.read_text().splitlines()
    assert all(line.startswith("{") for line in lines)
    assert not [
        line
        for line in daemon.logs()
        if line["logger"].startswith("streamwatch") and "exception" in line
    ]
    summary = stopped(daemon)
    assert summary["consumed"] - summary["redelivered"] == end
    assert_same_results(deployment, uninterrupted)
