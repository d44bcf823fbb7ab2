"""The delivery workers, with small fake sinks (the real ones and real receivers are in
tests/integration)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamwatch.alerting.dispatcher import Dispatcher
from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import Notification, sample_notification
from streamwatch.config import WebhookSinkSettings
from streamwatch.observe.metrics import Metrics
from streamwatch.sinks import Delivered, DeliveryFailed, DeliveryResult, RoutedSink


class Scripted:
    """Answers with the scripted results in turn, then Delivered; records each attempt."""

    def __init__(self, name: str, *script: DeliveryResult | Exception) -> None:
        self.name = name
        self.script = list(script)
        self.attempts: list[str] = []
        self.closed = False
        self.lock = threading.Lock()

    def send(self, notification: Notification) -> DeliveryResult:
        with self.lock:
            self.attempts.append(notification.id)
            step = self.script.pop(0) if self.script else Delivered(self.name)
        if isinstance(step, Exception):
            raise step
        return step

    def close(self) -> None:
        self.closed = True


def routed(sink: Scripted, **settings: object) -> RoutedSink:
    options = {"retry_base": 0.01, "retry_cap": 0.05, "max_attempts": 5, **settings}
    return RoutedSink(sink, WebhookSinkSettings(kind="webhook", url="http://unused", **options))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def delivered(outbox: Outbox, timeout: float) -> bool:
    """Wait until nothing is pending (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while outbox.pending():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def deliver(outbox: Outbox, metrics: Metrics, *sinks: RoutedSink, timeout: float = 10) -> bool:
    dispatcher = Dispatcher(outbox, sinks, metrics, rng=random.Random(1))
    dispatcher.start()
    try:
        return delivered(outbox, timeout)
    finally:
        dispatcher.stop()


def fail(retryable: bool = True, retry_after: float | None = None) -> DeliveryFailed:
    return DeliveryFailed("hook", "503 Service Unavailable", retryable, retry_after)


def test_retryable_failures_are_retried_until_delivered_under_one_id(
    outbox: Outbox, metrics: Metrics
) -> None:
    sink = Scripted("hook", fail(), fail(), fail())
    n = sample_notification(1_800_000_000.0)
    outbox.add(n, "hook")
    assert deliver(outbox, metrics, routed(sink))
    assert sink.attempts == [n.id] * 4
    assert outbox.counts() == {("hook", "sent"): 1}
    assert metrics.total("streamwatch_notifications", sink="hook", result="retried") == 3
    assert metrics.total("streamwatch_notifications", sink="hook", result="sent") == 1
    assert sink.closed


def test_past_the_attempt_budget_or_on_a_permanent_failure_it_is_dead_and_counted(
    outbox: Outbox, metrics: Metrics
) -> None:
    always = Scripted("hook", *[fail()] * 10)
    permanent = Scripted("chat", fail(retryable=False))
    n = sample_notification(1_800_000_000.0)
    outbox.add(n, "hook")
    outbox.add(n, "chat")
    assert deliver(outbox, metrics, routed(always, max_attempts=3), routed(permanent))
    assert len(always.attempts) == 3
    assert len(permanent.attempts) == 1
    assert outbox.counts() == {("hook", "dead"): 1, ("chat", "dead"): 1}
    assert metrics.total("streamwatch_notifications", result="dead") == 2


def test_retry_after_is_honoured(outbox: Outbox, metrics: Metrics) -> None:
    clock = [0.0]
    sink = Scripted("hook", fail(retry_after=30.0))
    outbox.add(sample_notification(1_800_000_000.0), "hook")
    dispatcher = Dispatcher(outbox, [routed(sink, retry_cap=60.0)], metrics, clock=lambda: clock[0])
    dispatcher.start()
    try:
        assert not delivered(outbox, 0.5)  # waiting the 30 s the receiver asked for
        assert len(sink.attempts) == 1
        clock[0] = 30.0
        assert delivered(outbox, 5.0)
    finally:
        dispatcher.stop()
    assert len(sink.attempts) == 2


def test_a_sink_that_raises_is_retried_and_its_worker_survives(
    outbox: Outbox, metrics: Metrics
) -> None:
    sink = Scripted("hook", RuntimeError("bug"))
    outbox.add(sample_notification(1_800_000_000.0), "hook")
    assert deliver(outbox, metrics, routed(sink))
    assert len(sink.attempts) == 2
    assert outbox.counts() == {("hook", "sent"): 1}


def test_one_sink_down_does_not_hold_up_another(outbox: Outbox, metrics: Metrics) -> None:
    down = Scripted("hook", *[fail()] * 1000)
    chat = Scripted("chat")
    n = sample_notification(1_800_000_000.0)
    outbox.add(n, "hook")
    outbox.add(n, "chat")
    deliver(
        outbox, metrics, routed(down, max_attempts=1000, retry_cap=0.01), routed(chat), timeout=1
    )
    assert chat.attempts == [n.id]
    assert outbox.counts()[("chat", "sent")] == 1


def test_pending_rows_are_sent_after_a_restart_once(tmp_path: Path, metrics: Metrics) -> None:
    path = tmp_path / "outbox.sqlite"
    n = sample_notification(1_800_000_000.0)
    before = Outbox(path)
    before.add(n, "hook")
    before.close()  # the process died before any send
    after = Outbox(path)
    sink = Scripted("hook")
    assert deliver(after, metrics, routed(sink))
    assert not after.add(n, "hook")  # the replayed window finds it already sent
    assert deliver(after, metrics, routed(sink))
    assert sink.attempts == [n.id]
    after.close()


def test_a_failing_row_is_retried_until_older_than_max_age_then_dead(
    outbox: Outbox, metrics: Metrics
) -> None:
    clock = [0.0]
    sink = Scripted("hook", *[fail()] * 100)
    outbox.add(sample_notification(1_800_000_000.0), "hook")
    created = outbox.listed()[0].created
    clock[0] = created
    dispatcher = Dispatcher(
        outbox, [routed(sink, max_attempts=None)], metrics, max_age=3600.0, clock=lambda: clock[0]
    )
    dispatcher.start()
    try:
        wait_for(lambda: len(sink.attempts) == 1)
        clock[0] = created + 3599.0  # an hour's outage, all but a second: still retried
        dispatcher.wake()
        wait_for(lambda: len(sink.attempts) == 2)
        assert outbox.counts() == {("hook", "pending"): 1}
        clock[0] = created + 3601.0
        dispatcher.wake()
        wait_for(lambda: outbox.counts() == {("hook", "dead"): 1})
    finally:
        dispatcher.stop()
    assert len(sink.attempts) == 3
    assert metrics.total("streamwatch_notifications", result="dead") == 1


def test_by_default_a_row_is_never_dead_for_its_attempts_and_waits_at_most_the_cap() -> None:
    settings = WebhookSinkSettings(kind="webhook", url="http://unused")
    assert settings.max_attempts is None
    assert settings.retry_cap <= 50.0  # delivery resumes within a minute of a recovery


def test_draining_a_failing_sink_gets_no_new_attempts_and_its_rows_stay_pending(
    outbox: Outbox, metrics: Metrics
) -> None:
    down = Scripted("hook", *[fail()] * 100)
    chat = Scripted("chat", fail())  # failed once, recovered: its retry is not waited for
    first, second = sample_notification(1_800_000_000.0), sample_notification(1_800_000_600.0)
    for n in (first, second):
        outbox.add(n, "hook")
        outbox.add(n, "chat")
    slow = {"retry_base": 600.0, "retry_cap": 600.0, "max_attempts": None}
    dispatcher = Dispatcher(outbox, [routed(down, **slow), routed(chat, **slow)], metrics)
    dispatcher.start()
    try:
        wait_for(lambda: len(down.attempts) == 2 and len(chat.attempts) == 2)
        assert not dispatcher.drain(1.0)  # the hook's rows stay pending
    finally:
        dispatcher.stop()
    assert len(down.attempts) == 2  # none spent while draining
    assert outbox.counts() == {("hook", "pending"): 2, ("chat", "sent"): 2}


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Slow(Scripted):
    """Delivers, after ``seconds``; tells when an attempt has begun."""

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(name)
        self.seconds = seconds
        self.begun = threading.Event()

    def send(self, notification: Notification) -> DeliveryResult:
        self.begun.set()
        time.sleep(self.seconds)
        return super().send(notification)


def test_models_held_back_get_no_new_attempt_and_the_one_under_way_is_waited_for(
    outbox: Outbox, metrics: Metrics
) -> None:
    sink = Slow("hook", 0.5)
    first, second = sample_notification(1_800_000_000.0), sample_notification(1_800_000_600.0)
    outbox.add(first, "hook")
    dispatcher = Dispatcher(outbox, [routed(sink)], metrics)
    dispatcher.start()
    try:
        assert sink.begun.wait(5)
        dispatcher.hold_back({first.model})  # returns once the send under way is done
        assert outbox.counts() == {("hook", "sent"): 1}
        assert dispatcher.sent() == {first.model}
        outbox.add(second, "hook")  # of the same model: left alone while held back
        dispatcher.wake()
        time.sleep(0.3)
        assert outbox.counts() == {("hook", "sent"): 1, ("hook", "pending"): 1}
        dispatcher.let_through({first.model})
        dispatcher.wake()
        wait_for(lambda: outbox.counts() == {("hook", "sent"): 2})
    finally:
        dispatcher.stop()
