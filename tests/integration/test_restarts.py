"""Restarts end to end, against a real broker: the daemon SIGKILLed at random points,
the broker frozen for 30 s, a SIGTERM mid-stream. Each time the daemon resumes and ends
where an uninterrupted run over the same stream ends: the same windows with the same
event counts and statistics, the same notifications, each delivered once."""

from __future__ import annotations

import functools
import json
import random
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from streamwatch import demo
from streamwatch.alerting.policy import isoformat
from streamwatch.config import Settings, load_settings
from streamwatch.state.store import StateStore
from tests.integration.helpers import (
    Daemon,
    committed,
    create_topic,
    env_file,
    expel_members,
    produce_bulk,
    wait_for,
)
from tests.kafka_local import Broker

pytestmark = pytest.mark.integration

SEED = 2026
EVENTS_PER_HOUR = 10_000  # per model: 200,000 predictions over the demo's ten hours
WINDOW = 300.0  # five-minute windows: 120 per model, a notification every few
CHECKPOINT_INTERVAL = 0.5  # seconds; a batch of 5,000 events takes about 0.3 s
KILLS = 5
OUTAGE = 30.0  # seconds the broker is gone

Window = tuple[str, str, str]  # model, window start, role
Verdict = tuple[int, str]  # events, digest of every statistic


@dataclass(frozen=True)
class Results:
    """What runs over a stream came to: each closed window's last verdict, and how often
    the file sink got each notification id."""

    windows: dict[Window, Verdict]
    delivered: Counter[str]


@dataclass
class Deployment:
    """One daemon's env, state, outbox and sink file, and the runs started with them."""

    kafka: str
    topic: str
    directory: Path
    group: str = field(default_factory=lambda: f"g-{uuid.uuid4().hex[:12]}")
    runs: list[Daemon] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True)
        self.sink = self.directory / "alerts.jsonl"
        self.env = env_file(
            self.directory / "daemon.env",
            kafka__bootstrap_servers=self.kafka,
            kafka__topics=json.dumps([self.topic]),
            kafka__group_id=self.group,
            window__size=f"{WINDOW:g}s",
            window__allowed_lateness="5m",  # the demo's arrivals lag by up to two minutes
            sinks__audit__kind="file",
            sinks__audit__path=self.sink,
            state__path=self.directory / "state.sqlite",
            state__checkpoint_interval=f"{CHECKPOINT_INTERVAL}s",
            server__port=0,
        )

    def start(self) -> Daemon:
        daemon = Daemon(self.env, self.directory / f"run{len(self.runs)}.log").start()
        self.runs.append(daemon)
        return daemon

    def settings(self) -> Settings:
        return load_settings([self.env])

    def committed(self) -> int:
        return committed(self.kafka, self.group, self.topic) or 0

    def checkpoint(self) -> int:
        """The offset the state file covers, where a restart resumes (0: none yet). Only
        while no run is up."""
        settings = self.settings()
        store = StateStore(settings.state.path, settings)
        try:
            checkpoint = store.load()
        finally:
            store.close()
        return 0 if checkpoint is None else checkpoint.offsets[(self.topic, 0)]

    def wait_until_committed(self, end: int) -> None:
        wait_for(lambda: self.committed() == end, 120, f"offset {end} committed", every=0.2)

    def wait_until_past(self, offset: int, every: float = 0.1) -> None:
        wait_for(lambda: self.committed() > offset, 120, f"a commit past {offset}", every)

    def results(self) -> Results:
        return Results(dict(closed_windows(self.runs)), delivered(self.sink))

    def kill_survivors(self) -> None:
        for daemon in self.runs:
            if daemon.process is not None:
                daemon.kill()


def closed_windows(daemons: Sequence[Daemon]) -> list[tuple[Window, Verdict]]:
    """Every "window closed" line of the runs, in order; a window re-evaluated after a
    crash appears again."""
    return [
        ((line["model"], line["window_start"], line["role"]), (line["events"], line["digest"]))
        for daemon in daemons
        for line in daemon.logs()
        if line["message"] == "window closed"
    ]


def notifications(sink: Path) -> list[dict[str, Any]]:
    if not sink.exists():
        return []
    return [json.loads(line) for line in sink.read_text().splitlines()]


def delivered(sink: Path) -> Counter[str]:
    return Counter(str(n["id"]) for n in notifications(sink))


def stopped(daemon: Daemon) -> dict[str, Any]:
    """The metrics summary of the run's last line."""
    (line,) = [line for line in daemon.logs() if line["message"] == "stopped"]
    return line


def restored_from(daemon: Daemon, topic: str) -> int:
    """The offset the run's restored state resumes from; 0 when it started afresh."""
    restored = [line for line in daemon.logs() if line["message"] == "state restored"]
    return int(restored[0]["offsets"][f"{topic}:0"]) if restored else 0


def logged_at(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"]).timestamp()


def live(daemon: Daemon) -> bool:
    """``/livez`` answers 200."""
    (address,) = {line["address"] for line in daemon.logs() if "address" in line}
    try:
        with urllib.request.urlopen(f"http://{address}/livez", timeout=5) as response:
            return int(response.status) == 200
    except urllib.error.HTTPError:
        return False


def complaints(daemon: Daemon, since: float) -> list[dict[str, Any]]:
    """Warnings and errors about Kafka logged since ``since`` (kafka-python's own lines
    are JSON too); not its notes on slow event-loop tasks, which are about this host."""
    return [
        line
        for line in daemon.logs()
        if line["level"] in {"warning", "error"}
        and line["logger"].startswith(("kafka", "streamwatch.kafka"))
        and line["logger"] != "kafka.net.selector"
        and logged_at(line) >= since
    ]


class WorkSinceCommit:
    """A condition: the run has closed a window since its committed offset last moved
    (as seen from here). Killed then, it loses work that its restart must redo."""

    def __init__(self, deployment: Deployment, daemon: Daemon) -> None:
        self.deployment, self.daemon = deployment, daemon
        self.offset, self.moved_at = -1, float("inf")

    def __call__(self) -> bool:
        offset = self.deployment.committed()
        if offset != self.offset:
            self.offset, self.moved_at = offset, time.time()
            return False
        return any(
            line["message"] == "window closed" and logged_at(line) > self.moved_at
            for line in self.daemon.logs()
        )


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    """The demo's predictions: 200,024 messages (4 of them garbage, 20 very late), drift
    from 06:20. Without its labels, which are joined however two topics interleave."""
    generated = demo.generate(events_per_hour=EVENTS_PER_HOUR, seed=SEED)
    return [
        line
        for line, is_label in zip(generated.lines, generated.is_label, strict=True)
        if not is_label
    ]


@pytest.fixture(scope="module")
def topic(kafka: str, stream: list[bytes]) -> str:
    name = create_topic(kafka)
    produce_bulk(kafka, name, stream)
    return name


@pytest.fixture(scope="module")
def uninterrupted(
    kafka: str, topic: str, stream: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One run over the whole stream, stopped once everything is committed."""
    deployment = Deployment(kafka, topic, tmp_path_factory.mktemp("restarts") / "uninterrupted")
    daemon = deployment.start()
    try:
        deployment.wait_until_committed(len(stream))
        assert daemon.stop() == 0
        yield deployment
    finally:
        deployment.kill_survivors()


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Callable[[str, str], Deployment]]:
    made: list[Deployment] = []

    def make(kafka: str, topic: str) -> Deployment:
        made.append(Deployment(kafka, topic, tmp_path / f"deployment{len(made)}"))
        return made[-1]

    yield make
    for deployment in made:
        deployment.kill_survivors()


def assert_same_results(deployment: Deployment, uninterrupted: Deployment) -> None:
    expected = uninterrupted.results()
    got = deployment.results()
    assert got.windows == expected.windows
    # A window re-evaluated after a crash came to the same verdict every time.
    for window, verdict in closed_windows(deployment.runs):
        assert verdict == expected.windows[window], window
    assert set(got.delivered) == set(expected.delivered)  # no alert lost
    assert set(got.delivered.values()) == {1}, got.delivered  # none sent twice


def test_uninterrupted_the_daemon_closes_every_window_once_and_alerts_on_the_demo_drift(
    stream: list[bytes], uninterrupted: Deployment
) -> None:
    """The reference the other tests compare with is itself right."""
    (daemon,) = uninterrupted.runs
    summary = stopped(daemon)
    assert summary["consumed"] == len(stream)
    assert summary["windowed"] == 2 * EVENTS_PER_HOUR * demo.HOURS
    assert (summary["bad"], summary["late"], summary["redelivered"]) == (4, 20, 0)
    windows = closed_windows([daemon])
    assert len(windows) == len(dict(windows)) == summary["windows_closed"]
    assert {role for (_, _, role), _ in windows} == {"reference", "evaluated"}

    shift_window = isoformat(demo.SHIFT_AT - demo.SHIFT_AT % WINDOW)
    firing_at_shift = {
        (a["labels"]["model"], a["labels"]["detector"], a["labels"]["subject"])
        for n in notifications(uninterrupted.sink)
        for a in n["alerts"]
        if a["status"] == "firing"
        and a["fingerprint"] in n["changed"]
        and n["window"]["start"] == shift_window
    }
    assert {
        ("fraud", "feature_drift", "amount"),
        ("fraud", "feature_drift", "country"),
        ("eta", "feature_drift", "traffic_index"),
    } <= firing_at_shift
    statuses = {a["status"] for n in notifications(uninterrupted.sink) for a in n["alerts"]}
    assert statuses == {"firing", "resolved"}
    assert set(delivered(uninterrupted.sink).values()) == {1}


def test_killed_at_five_random_points_the_daemon_ends_as_if_never_interrupted(
    kafka: str,
    topic: str,
    stream: list[bytes],
    uninterrupted: Deployment,
    deployments: Callable[[str, str], Deployment],
) -> None:
    rng = random.Random(SEED)
    deployment = deployments(kafka, topic)
    end = len(stream)
    resumed_from = 0
    for k in range(KILLS):
        # One kill in each of five spans of the stream, each after a random part of a
        # checkpoint interval, once the run has closed windows its state does not hold.
        past = int(end * rng.uniform(0.1 + 0.15 * k, 0.2 + 0.15 * k))
        daemon = deployment.start()
        # The previous run may have committed past ``past`` already: wait for this run
        # to commit work of its own, and to have said where it resumed.
        deployment.wait_until_past(max(past, resumed_from), every=0.05)
        if resumed_from:
            wait_for(functools.partial(restored_from, daemon, topic), 60, "the state restored")
        assert restored_from(daemon, topic) == resumed_from
        time.sleep(rng.uniform(0, CHECKPOINT_INTERVAL))
        wait_for(WorkSinceCommit(deployment, daemon), 30, "a window closed since the commit", 0.05)
        daemon.kill()
        at_kill, checkpoint = deployment.committed(), deployment.checkpoint()
        assert resumed_from < at_kill <= checkpoint < end  # mid-stream; commits follow state
        resumed_from = checkpoint
        expel_members(kafka, deployment.group)

    last = deployment.start()
    deployment.wait_until_committed(end)
    assert last.stop() == 0
    assert restored_from(last, topic) == resumed_from
    summary = stopped(last)
    assert summary["consumed"] - summary["redelivered"] == end - resumed_from

    assert_same_results(deployment, uninterrupted)
    evaluations = Counter(window for window, _ in closed_windows(deployment.runs))
    assert max(evaluations.values()) > 1  # some kill did lose work that a restart redid


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test alone, to freeze and thaw."""
    if shutil.which("java") is None:
        pytest.skip("a broker of the test's own runs on a local Java")
    broker = Broker(tmp_path / "kafka").start()
    try:
        yield broker
    finally:
        broker.resume()  # a frozen broker would not heed the SIGTERM that stops it
        broker.stop()


def test_the_broker_gone_for_30_s_mid_stream_the_daemon_rides_it_out(
    own_broker: Broker,
    stream: list[bytes],
    uninterrupted: Deployment,
    deployments: Callable[[str, str], Deployment],
) -> None:
    kafka = own_broker.bootstrap
    topic = create_topic(kafka)
    produce_bulk(kafka, topic, stream)
    deployment = deployments(kafka, topic)
    end = len(stream)
    daemon = deployment.start()
    deployment.wait_until_past(int(end * 0.3))
    before = deployment.committed()
    own_broker.pause()  # SIGSTOP: connections hang, nothing answers
    gone_at = time.time()
    try:
        deadline = time.monotonic() + OUTAGE
        while time.monotonic() < deadline:
            assert daemon.process is not None
            assert daemon.process.poll() is None, "the daemon exited while the broker was gone"
            assert live(daemon)  # waiting on Kafka is no reason to be restarted
            time.sleep(1.0)
        # kafka-python waits 30 s for an answer; until a request times out the daemon,
        # parked in a poll or a commit, has nothing to say.
        wait_for(lambda: complaints(daemon, gone_at), 30, "a warning about the broker")
    finally:
        own_broker.resume()
    assert before < end  # the outage came mid-stream

    deployment.wait_until_committed(end)
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log_path.read_text()
    summary = stopped(daemon)
    assert summary["consumed"] - summary["redelivered"] == end
    assert_same_results(deployment, uninterrupted)


def test_sigterm_while_the_broker_is_gone_still_exits_within_the_grace_period(
    own_broker: Broker,
    stream: list[bytes],
    deployments: Callable[[str, str], Deployment],
) -> None:
    kafka = own_broker.bootstrap
    topic = create_topic(kafka)
    produce_bulk(kafka, topic, stream)
    deployment = deployments(kafka, topic)
    daemon = deployment.start()
    deployment.wait_until_past(int(len(stream) * 0.3))
    own_broker.pause()
    try:
        time.sleep(3.0)  # the loop is now parked on a broker that does not answer
        asked = time.monotonic()
        # Commits and the consumer's close are bounded: no 30 s Kafka timeouts.
        assert daemon.stop(timeout=60) == 0
        assert time.monotonic() - asked < deployment.settings().server.grace_period
    finally:
        own_broker.resume()
    assert "Traceback" not in daemon.log_path.read_text()


def test_sigterm_mid_stream_exits_within_the_grace_period_and_a_restart_resumes_exactly(
    kafka: str,
    topic: str,
    stream: list[bytes],
    uninterrupted: Deployment,
    deployments: Callable[[str, str], Deployment],
) -> None:
    deployment = deployments(kafka, topic)
    end = len(stream)
    past = int(end * random.Random(SEED + 1).uniform(0.3, 0.6))
    first = deployment.start()
    deployment.wait_until_past(past)
    asked = time.monotonic()
    assert first.stop(timeout=60) == 0
    took = time.monotonic() - asked
    assert took < deployment.settings().server.grace_period
    at_stop = deployment.committed()
    assert at_stop == deployment.checkpoint() < end  # mid-stream; state and commit agree
    before = stopped(first)
    assert (before["consumed"], before["redelivered"]) == (at_stop, 0)

    second = deployment.start()
    deployment.wait_until_committed(end)
    assert second.stop() == 0
    after = stopped(second)
    assert (after["consumed"], after["redelivered"]) == (end - at_stop, 0)  # from the stop on
    consumed = before["consumed"] + after["consumed"]
    assert consumed - before["redelivered"] - after["redelivered"] == end
    assert_same_results(deployment, uninterrupted)
