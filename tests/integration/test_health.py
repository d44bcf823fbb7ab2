"""The operator's endpoints over real HTTP: ``/metrics``, ``/livez`` and ``/readyz``, on
their own server and on the daemon's through its life: not ready while Kafka cannot be
reached, ready once partitions are assigned, not ready again from SIGTERM while it
drains its pending notifications (none to a sink that is failing), then exit 0 within
the grace period."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from streamwatch.config import ServerSettings
from streamwatch.observe.health import Health, serve
from streamwatch.pipeline.engine import EXIT_MARGIN
from tests.factories import event
from tests.integration.helpers import (
    Daemon,
    committed,
    consume_all,
    end_offset,
    env_file,
    produce,
    wait_for,
)
from tests.integration.test_restarts import logged_at
from tests.kafka_local import free_port

pytestmark = pytest.mark.integration

T0 = 1_780_000_000_000  # epoch ms
GRACE = 10.0  # SERVER__GRACE_PERIOD of the daemon


def get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def check(url: str) -> tuple[int, dict[str, Any]]:
    status, body = get(url)
    return status, json.loads(body)


def test_the_endpoints_say_what_the_loop_reports() -> None:
    registry = CollectorRegistry()
    Counter("streamwatch_probe", "A counter to scrape", registry=registry).inc(3)
    health = Health(liveness_timeout=0.5)
    server = serve(ServerSettings(port=0), registry, health)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        # Before the state is restored, and before partitions are assigned: not ready.
        assert check(f"{base}/readyz") == (
            503,
            {"ok": False, "restored": False, "assigned": False, "draining": False},
        )
        health.restored = True
        assert check(f"{base}/readyz")[0] == 503
        health.assigned = lambda: True
        assert check(f"{base}/readyz") == (
            200,
            {"ok": True, "restored": True, "assigned": True, "draining": False},
        )

        def closing() -> bool:
            raise RuntimeError("the consumer is closing")

        health.assigned = closing  # a consumer that raises is not assigned
        assert check(f"{base}/readyz")[1]["assigned"] is False
        health.assigned = lambda: True
        health.draining = True
        assert check(f"{base}/readyz") == (
            503,
            {"ok": False, "restored": True, "assigned": True, "draining": True},
        )

        # Live while the loop polls within the timeout; a stalled loop is not.
        health.polled()
        status, body = check(f"{base}/livez")
        assert (status, body["ok"]) == (200, True)
        time.sleep(0.7)
        status, body = check(f"{base}/livez")
        assert (status, body["ok"]) == (503, False)
        assert body["seconds_since_poll"] >= 0.5
        health.polled()
        assert check(f"{base}/livez")[0] == 200

        status, text = get(f"{base}/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text.decode())}
        assert families["streamwatch_probe"].samples[0].value == 3.0
        assert get(f"{base}/nowhere")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


# -- the daemon -----------------------------------------------------------------------------


@contextmanager
def forwarding(port: int, target: str) -> Iterator[None]:
    """A TCP forwarder from 127.0.0.1:``port`` to ``target`` (host:port): the cluster
    becomes reachable at the bootstrap address the daemon was given."""
    host, target_port = target.split(",", maxsplit=1)[0].rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", port))
    sockets: list[socket.socket] = []
    lock = threading.Lock()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener is closed
            upstream = socket.create_connection((host, int(target_port)))
            with lock:
                sockets.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield
    finally:
        listener.close()
        acceptor.join(5)
        with lock:
            for s in sockets:
                s.close()


def stream() -> tuple[list[bytes], dict[str, int]]:
    """Twenty one-minute windows of 150 predictions, x shifting by 3 sd from minute 12;
    three bad messages and two late events among them. Also the bad ones by reason."""
    rng = random.Random(3)
    values = [
        event(
            f"{minute}-{i}",
            timestamp=T0 + minute * 60_000 + i * 400,
            score=rng.random(),
            features={"x": rng.gauss(3.0 if minute >= 12 else 0.0, 1.0)},
        )
        for minute in range(20)
        for i in range(150)
    ]
    values[500:500] = [b"{", b"not json", event("w", score="high")]
    values += [event(f"late-{k}", timestamp=T0 + k * 1000) for k in range(2)]  # minute 0
    return values, {"invalid_json": 2, "wrong_type": 1}


Scraped = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Scraped:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(base: str) -> Scraped:
    status, text = get(f"{base}/metrics")
    assert status == 200
    return samples(text.decode())


def value(scraped: Scraped, name: str, **labels: str) -> float:
    return sum(
        v for (n, have), v in scraped.items() if n == name and set(labels.items()) <= set(have)
    )


def assert_scraped(scraped: Scraped, values: list[bytes], bad: dict[str, int], topic: str) -> None:
    """Everything processed is on /metrics, as the daemon counted it."""
    assert value(scraped, "streamwatch_messages_total", topic=topic) == len(values)
    for reason, count in bad.items():
        assert value(scraped, "streamwatch_bad_events_total", reason=reason) == count
    assert value(scraped, "streamwatch_dead_letters_total") == sum(bad.values())
    assert value(scraped, "streamwatch_late_events_total", model="m") == 2
    assert value(scraped, "streamwatch_events_total", model="m") == len(values) - 5
    assert value(scraped, "streamwatch_windows_closed_total", model="m", role="evaluated") >= 1
    assert value(scraped, "streamwatch_findings_total", model="m") >= 1
    assert value(scraped, "streamwatch_alerts_total", status="firing") >= 1
    assert value(scraped, "streamwatch_notifications_total", sink="audit", result="sent") >= 1
    assert value(scraped, "streamwatch_consumer_lag", topic=topic, partition="0") == 0
    assert value(scraped, "streamwatch_processing_seconds_count") >= 1
    assert value(scraped, "streamwatch_checkpoint_seconds_count") >= 1
    age = value(scraped, "streamwatch_checkpoint_age_seconds")
    assert 0 <= age < 60  # a NaN (never checkpointed) fails too
    statistics = {labels for name, labels in scraped if name == "streamwatch_statistic"}
    assert ("model", "m") in {pair for labels in statistics for pair in labels}
    # x drifted: its statistic, against its thresholds, and the alert firing now.
    drift = {"model": "m", "detector": "feature_drift", "subject": "x"}
    assert value(scraped, "streamwatch_statistic", **drift) > 0
    assert value(scraped, "streamwatch_statistic_threshold", **drift, severity="warning") > 0
    assert value(scraped, "streamwatch_alerts_firing", model="m") >= 1
    # The webhook nobody listens to keeps its notifications pending; the file has none.
    assert value(scraped, "streamwatch_outbox_pending", sink="hook") >= 1
    assert value(scraped, "streamwatch_outbox_pending", sink="audit") == 0


def assert_started_at_0(scraped: Scraped) -> None:
    """Before any message: each sink's results and each bad-event reason at 0, so that
    increase() sees their first event; the backlog of each sink; no model yet."""
    for sink in ("audit", "hook"):
        for result in ("sent", "retried", "dead"):
            labels = {"sink": sink, "result": result}
            assert value(scraped, "streamwatch_notifications_total", **labels) == 0
            assert (
                "streamwatch_notifications_total",
                tuple(sorted(labels.items())),
            ) in scraped
        assert ("streamwatch_outbox_pending", (("sink", sink),)) in scraped
    reasons = {
        dict(labels)["reason"] for name, labels in scraped if name == "streamwatch_bad_events_total"
    }
    assert {"invalid_json", "wrong_type", "too_large"} <= reasons
    assert value(scraped, "streamwatch_bad_events_total") == 0
    assert not [name for name, _ in scraped if name == "streamwatch_statistic"]


def test_the_daemon_is_ready_while_consuming_and_drains_on_sigterm_within_the_grace_period(
    kafka: str, topics: Callable[[int], list[str]], tmp_path: Path
) -> None:
    topic, dlq = topics(2)
    values, bad = stream()
    produce(kafka, topic, values)
    bootstrap, http = free_port(), free_port()  # nothing listens at the bootstrap yet
    group = f"g-{uuid.uuid4().hex}"
    env = env_file(
        tmp_path / "daemon.env",
        kafka__bootstrap_servers=f"127.0.0.1:{bootstrap}",
        kafka__connect_timeout="1s",
        kafka__topics=json.dumps([topic]),
        kafka__group_id=group,
        kafka__dlq_topic=dlq,
        window__size="1m",
        window__allowed_lateness="0s",
        state__path=tmp_path / "state.sqlite",
        state__checkpoint_interval="0.5s",
        server__port=http,
        server__grace_period=f"{GRACE:g}s",
        sinks__audit__kind="file",
        sinks__audit__path=tmp_path / "alerts.jsonl",
        # Nothing listens here either: its notifications stay pending, retried all along.
        sinks__hook__kind="webhook",
        sinks__hook__url=f"http://127.0.0.1:{free_port()}/hook",
        sinks__hook__timeout="1s",
        sinks__hook__retry_base="0.5s",
        sinks__hook__retry_cap="1s",
        sinks__hook__max_attempts=1000,
    )
    base = f"http://127.0.0.1:{http}"
    daemon = Daemon(env, tmp_path / "daemon.log").start()
    assert daemon.process is not None
    try:
        # Up, live, state restored (there was none), but no partitions: not ready.
        wait_for(lambda: _answers(f"{base}/livez"), 30, "the HTTP server")
        assert check(f"{base}/livez")[0] == 200
        assert check(f"{base}/readyz") == (
            503,
            {"ok": False, "restored": True, "assigned": False, "draining": False},
        )
        assert_started_at_0(scrape(base))
        with forwarding(bootstrap, kafka):
            wait_for(lambda: check(f"{base}/readyz")[0] == 200, 60, "readiness")
            assert check(f"{base}/readyz")[1] == {
                "ok": True,
                "restored": True,
                "assigned": True,
                "draining": False,
            }
            end = end_offset(kafka, topic)
            wait_for(lambda: committed(kafka, group, topic) == end, 60, "every message")
            wait_for(
                lambda: value(scrape(base), "streamwatch_notifications_total", sink="hook") > 0,
                30,
                "a failed delivery",
            )
            assert check(f"{base}/livez")[0] == 200
            scraped = scrape(base)

            daemon.process.terminate()
            stopped_at, terminated_at = time.monotonic(), time.time()
            # From SIGTERM on, not ready while it drains; the process is still there.
            wait_for(lambda: check(f"{base}/readyz")[0] == 503, 2, "not ready", every=0.05)
            assert check(f"{base}/readyz")[1]["draining"] is True
            assert daemon.process.poll() is None
            code = daemon.process.wait(GRACE + 5)
            elapsed = time.monotonic() - stopped_at
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
    assert code == 0
    assert elapsed < GRACE - EXIT_MARGIN, f"exited {elapsed:.1f} s after SIGTERM"
    logs = daemon.logs()
    # The failing sink got no new attempt while the daemon drained (one under way may
    # end, within its 1 s timeout): its notifications stay pending for the next start.
    retried = [
        line
        for line in logs
        if line["message"] == "notification not delivered, will retry"
        and logged_at(line) > terminated_at + 1.5
    ]
    assert retried == []
    (pending,) = [
        line for line in logs if line.get("message", "").startswith("notifications still")
    ]
    assert pending["pending"] >= 1
    (stopped,) = [line for line in logs if line.get("message") == "stopped"]
    assert stopped["consumed"] == len(values)

    assert_scraped(scraped, values, bad, topic)
    assert len(consume_all(kafka, dlq, expected=sum(bad.values()))) == sum(bad.values())


def _answers(url: str) -> bool:
    try:
        get(url)
    except OSError:
        return False
    return True


def test_deliveries_hanging_at_sigterm_do_not_hold_the_exit_past_the_grace_period(
    kafka: str, topics: Callable[[int], list[str]], tmp_path: Path
) -> None:
    (topic,) = topics(1)
    produce(kafka, topic, stream()[0])
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, never answers
    silent.settimeout(60)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
    env = env_file(
        tmp_path / "daemon.env",
        kafka__bootstrap_servers=kafka,
        kafka__topics=json.dumps([topic]),
        kafka__group_id=f"g-{uuid.uuid4().hex}",
        window__size="1m",
        window__allowed_lateness="0s",
        state__path=tmp_path / "state.sqlite",
        server__port=0,
        server__grace_period="8s",
        sinks__ops__kind="webhook",
        sinks__ops__url=url,
        sinks__ops__timeout="30s",
        sinks__oncall__kind="webhook",
        sinks__oncall__url=url,
        sinks__oncall__timeout="30s",
    )
    daemon = Daemon(env, tmp_path / "daemon.log").start()
    assert daemon.process is not None
    connections = []
    try:
        for _ in range(2):  # both sinks' first deliveries are under way, and hang
            connections.append(silent.accept()[0])
        daemon.process.terminate()
        stopped_at = time.monotonic()
        code = daemon.process.wait(60)
        elapsed = time.monotonic() - stopped_at
    finally:
        for connection in connections:
            connection.close()
        silent.close()
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
    assert code == 0
    assert elapsed < 8.0, f"exited {elapsed:.1f} s after SIGTERM"


@pytest.mark.parametrize("scaled_out", [False, True], ids=["single", "changelog"])
def test_while_kafka_cannot_be_reached_at_start_the_daemon_is_live_and_stops_cleanly(
    tmp_path: Path, scaled_out: bool
) -> None:
    """A sidecar's restarts take its pod out of service: waiting for Kafka at start,
    the daemon stays live past the liveness timeout (not ready), and SIGTERM ends it."""
    http = free_port()
    more = {"state__changelog_topic": "changelog"} if scaled_out else {}
    env = env_file(
        tmp_path / "daemon.env",
        kafka__bootstrap_servers=f"127.0.0.1:{free_port()}",  # nothing listens
        kafka__connect_timeout="1s",
        kafka__topics=json.dumps(["events"]),
        state__path=tmp_path / "state.sqlite",
        server__port=http,
        server__liveness_timeout="2s",
        **more,
    )
    base = f"http://127.0.0.1:{http}"
    daemon = Daemon(env, tmp_path / "daemon.log").start()
    try:
        wait_for(lambda: _answers(f"{base}/livez"), 30, "the HTTP server")
        time.sleep(4)  # twice the liveness timeout, no poll yet
        status, live = check(f"{base}/livez")
        assert (status, live["waiting_for"]) == (200, "kafka")
        assert check(f"{base}/readyz")[0] == 503
        assert daemon.stop() == 0
    finally:
        if daemon.process is not None:
            daemon.kill()
    assert any(
        line.get("message") == "stopped before Kafka could be reached" for line in daemon.logs()
    )
