"""What Kafka sources share: connection errors waited out with backoff, logged sparingly."""

from __future__ import annotations

import logging
import threading

import pytest

from streamwatch.sources.base import Outage


class Waits(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waited: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(timeout or 0.0)
        return False


def test_an_outage_waits_ever_longer_up_to_a_bound_and_logs_sparingly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = Waits()
    outage = Outage(stopping)
    with caplog.at_level(logging.INFO, logger="streamwatch.kafka"):
        for _ in range(7):
            outage.failed("poll", ConnectionRefusedError(111, "refused"))
        outage.failed("commit", TimeoutError(), wait=False)  # the engine retries it
        outage.over()
        outage.over()  # once
    assert stopping.waited == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    messages = [(r.getMessage(), getattr(r, "operation", None)) for r in caplog.records]
    assert messages == [
        ("Kafka request failed; retrying", "poll"),
        ("Kafka request failed; retrying", "commit"),
        ("Kafka reachable again", None),
    ]
    assert caplog.records[-1].failures == 8  # type: ignore[attr-defined]
    assert outage.since is None

    outage.failed("poll", ConnectionRefusedError())
    assert stopping.waited[-1] == 0.5  # a new outage starts again from the first pause
