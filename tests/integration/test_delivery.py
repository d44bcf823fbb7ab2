"""Delivery faults end to end: a flaky receiver, a receiver that never comes, and the
daemon killed with notifications in its outbox; the webhook sink, a real HTTP receiver
and, for the daemon, the real broker."""

from __future__ import annotations

import base64
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from streamwatch.alerting.dispatcher import Dispatcher
from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import sample_notification
from streamwatch.config import WebhookSinkSettings
from streamwatch.observe.metrics import Metrics
from streamwatch.sinks import RoutedSink
from streamwatch.sinks.webhook import WebhookSink
from tests.factories import event
from tests.integration.helpers import Daemon, committed, env_file, produce, wait_for
from tests.integration.receivers import Received, Reply, receiving, verify
from tests.kafka_local import free_port

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"delivery tests' shared secret..!").decode()


def webhook(url: str, **settings: object) -> RoutedSink:
    options = {"retry_base": 0.05, "retry_cap": 0.2, "timeout": 2.0, **settings}
    config = WebhookSinkSettings(kind="webhook", url=url, secret=SecretStr(SECRET), **options)
    return RoutedSink(WebhookSink("hook", config), config)


def test_a_receiver_failing_three_times_gets_the_notification_once_under_one_id() -> None:
    def flaky(got: Received) -> Reply:
        assert verify(SECRET, got.headers, got.body)
        return (503, {}) if len(receiver.requests) <= 3 else (204, {})

    with receiving(flaky) as receiver:
        outbox, metrics = Outbox(), Metrics(CollectorRegistry())
        n = sample_notification(1_800_000_000.0)
        outbox.add(n, "hook")
        dispatcher = Dispatcher(outbox, [webhook(receiver.url)], metrics)
        dispatcher.start()
        wait_for(lambda: outbox.pending() == 0, 20, "the delivery")
        dispatcher.stop()
    ids = [got.headers["webhook-id"] for got in receiver.requests]
    assert ids == [n.id] * 4  # three refused, the fourth accepted: one id throughout
    assert outbox.counts() == {("hook", "sent"): 1}
    assert metrics.total("streamwatch_notifications", result="sent") == 1


def drifting(minutes: int = 20, shift_at: int = 12, model: str = "m") -> list[bytes]:
    """One-minute windows of 150 events; feature x jumps by 3 sd from ``shift_at``."""
    return [
        event(
            f"{model}-{minute}-{i}",
            model_id=model,
            timestamp=1_790_000_000_000 + minute * 60_000 + i * 400,
            features={"x": ((i * 7919) % 150) / 150.0 + (3.0 if minute >= shift_at else 0.0)},
        )
        for minute in range(minutes)
        for i in range(150)
    ]


def daemon_env(tmp_path: Path, kafka: str, topic: str, url: str, **extra: object) -> Path:
    settings: dict[str, object] = {"state__checkpoint_interval": "2s", **extra}
    return env_file(
        tmp_path / f"d{len(list(tmp_path.glob('*.env')))}.env",
        kafka__bootstrap_servers=kafka,
        kafka__topics=f'["{topic}"]',
        kafka__group_id=f"g-{topic}",
        kafka__auto_offset_reset="earliest",
        window__size="1m",
        window__allowed_lateness="0s",
        state__path=tmp_path / "state.sqlite",
        server__port=0,
        sinks__hook__kind="webhook",
        sinks__hook__url=url,
        sinks__hook__secret=SECRET,
        **({"sinks__hook__retry_base": "0.2s", "sinks__hook__retry_cap": "0.5s"} | settings),
    )


def outbox_rows(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "state.sqlite.outbox"
    if not path.exists():
        return Counter()
    with sqlite3.connect(path) as db:
        try:
            rows = db.execute("SELECT status FROM outbox WHERE sink = 'hook'").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return Counter()
    return Counter(status for (status,) in rows)


def test_a_receiver_down_all_along_leaves_the_notification_dead_the_daemon_running(
    kafka: str, topics: Callable[[int], list[str]], tmp_path: Path
) -> None:
    (topic,) = topics(1)
    produce(kafka, topic, drifting())
    nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens here
    env = daemon_env(tmp_path, kafka, topic, nobody, sinks__hook__max_attempts=3)
    daemon = Daemon(env, tmp_path / "daemon.log").start()
    try:
        wait_for(lambda: outbox_rows(tmp_path)["dead"] >= 1, 90, "a dead notification")
        dead = [line for line in daemon.logs() if line["message"] == "notification dead"]
        assert dead
        assert dead[0]["attempts"] == 3
        assert daemon.process is not None
        assert daemon.process.poll() is None  # still running
    finally:
        assert daemon.stop() == 0


def test_notifications_in_the_outbox_when_the_daemon_is_killed_are_sent_after_restart_once(
    kafka: str, topics: Callable[[int], list[str]], tmp_path: Path
) -> None:
    (topic,) = topics(1)
    produce(kafka, topic, drifting())
    port = free_port()
    env = daemon_env(tmp_path, kafka, topic, f"http://127.0.0.1:{port}/hook")
    first = Daemon(env, tmp_path / "first.log").start()
    again = daemon_env(
        tmp_path, kafka, topic, f"http://127.0.0.1:{port}/hook", state__checkpoint_interval="1s"
    )
    # The receiver is not up yet: the notifications wait in the outbox, retrying.
    wait_for(lambda: outbox_rows(tmp_path)["pending"] >= 1, 90, "pending notifications")
    first.kill()  # SIGKILL: no drain; what came after the last checkpoint is read again
    pending = outbox_rows(tmp_path)["pending"]

    def accept(got: Received) -> Reply:
        return (204, {}) if verify(SECRET, got.headers, got.body) else (401, {})

    with receiving(accept, port=port) as receiver:
        second = Daemon(again, tmp_path / "second.log").start()
        try:
            wait_for(lambda: outbox_rows(tmp_path)["sent"] >= pending, 90, "the sends")
            # The restart re-reads the topic and rebuilds the same windows: its
            # notifications have the same ids, so nothing is stored or sent twice.
            total = len(drifting())
            wait_for(lambda: committed(kafka, f"g-{topic}", topic) == total, 90, "the replay")
        finally:
            assert second.stop() == 0
    ids = Counter(got.headers["webhook-id"] for got in receiver.requests)
    assert ids
    assert all(count == 1 for count in ids.values()), ids
    assert len(ids) == outbox_rows(tmp_path)["sent"]
    assert outbox_rows(tmp_path)["pending"] == 0


def test_a_receiver_down_for_five_minutes_gets_every_notification_once_within_a_minute(
    kafka: str, topics: Callable[[int], list[str]], tmp_path: Path
) -> None:
    """The default retry settings outlast an ordinary outage: nothing is dead, and each
    notification arrives within a minute of the receiver's recovery."""
    (topic,) = topics(1)
    models = [f"model-{k}" for k in range(8)]
    stream = [event for model in models for event in drifting(model=model)]
    outage = 300.0
    recovered_at, accepted = time.monotonic() + outage, list[tuple[str, float]]()

    def down_then_up(got: Received) -> Reply:
        assert verify(SECRET, got.headers, got.body)
        if time.monotonic() < recovered_at:
            return (500, {})
        accepted.append((got.headers["webhook-id"], time.monotonic()))
        return (204, {})

    with receiving(down_then_up) as receiver:
        env = daemon_env(
            tmp_path,
            kafka,
            topic,
            receiver.url,
            sinks__hook__retry_base=None,  # the defaults, all of them
            sinks__hook__retry_cap=None,
        )
        daemon = Daemon(env, tmp_path / "daemon.log").start()
        try:
            produce(kafka, topic, stream)
            wait_for(lambda: outbox_rows(tmp_path)["pending"] >= len(models), 120, "the alerts")
            wait_for(lambda: time.monotonic() > recovered_at, outage + 10, "the recovery")
            wait_for(lambda: outbox_rows(tmp_path)["pending"] == 0, 90, "the deliveries")
        finally:
            assert daemon.stop() == 0
    ids = Counter(id_ for id_, _ in accepted)
    assert all(n == 1 for n in ids.values()), ids  # each accepted once
    assert outbox_rows(tmp_path) == {"sent": len(ids)}  # none dead, none left
    assert len(ids) >= len(models)  # each model's shift fired
    assert len(receiver.requests) > 2 * len(ids)  # the outage was retried through
    late = max(t for _, t in accepted) - recovered_at
    assert late <= 60.0, f"the last notification came {late:.0f} s after the recovery"
