"""The daemon when Kafka is not there: clear log lines, retries with backoff, clean exit."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.helpers import Daemon, env_file, wait_for
from tests.kafka_local import free_port


def test_an_unreachable_broker_is_retried_with_backoff_and_sigterm_exits_cleanly(
    tmp_path: Path,
) -> None:
    nobody = free_port()  # nothing listens here
    env = env_file(
        tmp_path / "d.env",
        kafka__bootstrap_servers=f"127.0.0.1:{nobody}",
        kafka__connect_timeout="0.5s",
        state__path=tmp_path / "state.sqlite",
        server__port=0,
    )
    daemon = Daemon(env, tmp_path / "daemon.log").start()

    def retries() -> list[dict[str, object]]:
        return [line for line in daemon.logs() if line["message"] == "cannot reach Kafka; retrying"]

    wait_for(lambda: len(retries()) >= 3, 30, "three connection attempts")
    assert daemon.process is not None
    assert daemon.process.poll() is None  # still running, not crash-looping
    delays = [line["retry_in_seconds"] for line in retries()[:3]]
    assert delays == [1.0, 2.0, 4.0]
    assert all(line["bootstrap_servers"] == f"127.0.0.1:{nobody}" for line in retries())
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
