"""Scale-out end to end, against a real broker: three ``streamwatch run`` instances in one
consumer group over a six-partition topic, state kept per partition and written to a
compacted changelog topic. Six models are keyed by model id; a seventh, busy one is keyed
by event id, spread over all six partitions, its windows and its labelled outcomes
merged by one instance (its labels keyed by event id too, so each comes through its
prediction's partition). One
instance is SIGKILLed mid-stream and expelled from the group, its partitions move to the
others, which restore them from the changelog and redo what its last checkpoint did not
cover; a fourth instance joins and takes partitions over. In the end the group has closed
the same windows with the same statistics, and sent the same notifications, as a single
instance over the same topic.

The stream is produced in three parts, so that each step happens with work left: the first
part before the three start, the second while they run (the kill comes in it, right after
the victim closed a window that notifies and before its next checkpoint), the third once
the fourth instance holds partitions. The single instance reads the whole topic after.
Each instance of the group sends to its own file sink and to one shared webhook receiver:
across all of them, every notification of the single instance arrives once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from streamwatch.alerting.policy import isoformat
from streamwatch.observe import history
from tests.integration.helpers import (
    Daemon,
    create_topic,
    end_offsets,
    env_file,
    expel_member,
    produce_keyed,
    wait_for,
)
from tests.integration.receivers import Received, Receiver, Reply, receiving
from tests.integration.test_restarts import (
    Verdict,
    Window,
    closed_windows,
    delivered,
    logged_at,
    notifications,
    stopped,
)

pytestmark = pytest.mark.integration

SEED = 2027
PARTITIONS = 6
# One model per partition: Kafka's default partitioner sends key "eta" to 0, "ltv" to 1...
MODELS = ("eta", "ltv", "demand", "loans", "fraud", "churn")
CLASSIFIERS = frozenset({"loans", "fraud", "churn"})  # the others are regressions
SPREAD = "busy"  # keyed by event id: its events come through every partition
LABELLED = frozenset({"fraud", "churn", SPREAD})  # a fifth of their predictions get a label
DRIFTED = {"fraud": "x1", "demand": "x2", SPREAD: "x3"}  # the feature whose mean moves
SHIFT = 0.6
PREDICTIONS_PER_MODEL = 52_000  # 364,000 predictions, and about 31,200 labels
START = 1_794_700_800.0  # 2026-11-15T00:00:00Z, in the past: no event is from the future
HOURS = 8
WINDOW = 300.0  # five-minute windows: 96 per model, the last left open
WINDOWS_CLOSED = int(HOURS * 3600 / WINDOW) - 1
SHIFT_AT = START + 4 * 3600 + 12.5 * 60  # inside the 04:10 window
MAX_ARRIVAL_DELAY = 60.0  # arrival is out of order by up to a minute; lateness allows two
LABEL_DELAY = 1800.0
CHECKPOINT_INTERVAL = 1.0
PARTS = (0.35, 0.75)  # where the stream is cut, in arrival order, into three productions
TIMEOUT = 120.0
# Detectors judged on a window's labelled outcomes: their notification comes apart from
# the window's own (``role`` "outcomes"), later, for the same model and window.
OUTCOME_DETECTORS = frozenset(
    {"performance", "concept_drift", "slice_performance", "fairness", "label_shift", "labels"}
)


def partition_of(key: str) -> int:
    """Kafka's default partitioner (kafka-python's DefaultPartitioner, Java's too)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


HOME = {model: partition_of(model) for model in MODELS}
# Where each model's windows are evaluated: the spread model's, by the instance holding its
# partition of the partials topic (which goes with the same partition of the source).
OWNER = {**HOME, SPREAD: partition_of(SPREAD)}


@dataclass(frozen=True)
class Stream:
    """The messages in arrival order, each keyed by its model id (the spread model's by
    event id), and the partition each goes to."""

    values: list[bytes]
    keys: list[bytes]
    partitions: list[int]
    predictions: int
    labels: int

    def ends(self, upto: int) -> dict[int, int]:
        """The end offset of each partition once the first ``upto`` messages are in."""
        counts = Counter(self.partitions[:upto])
        return {p: counts[p] for p in range(PARTITIONS)}


def _model_events(
    index: int, model: str, start: float = START, n: int = PREDICTIONS_PER_MODEL
) -> list[tuple[float, bytes, bytes]]:
    """(arrival time, message, key) of one model's predictions and labels."""
    rng = np.random.default_rng([SEED, index])
    t = np.sort(start + rng.uniform(0, HOURS * 3600, n))
    arrival = t + rng.uniform(0, MAX_ARRIVAL_DELAY, n)
    x = dict(zip(("x1", "x2", "x3"), rng.normal(0.0, 1.0, (3, n)), strict=True))
    if model in DRIFTED:
        x[DRIFTED[model]] += SHIFT * (t >= SHIFT_AT)
    amount = np.exp(rng.normal(3.0, 0.7, n))
    channel = rng.choice(np.array(["web", "app", "pos"]), n, p=[0.5, 0.35, 0.15])
    latency = rng.gamma(4.0, 3.0, n)
    linear = 0.8 * x["x1"] + 0.5 * x["x2"] - 0.3 * x["x3"] + 0.2 * (np.log(amount) - 3.0)
    score = 1.0 / (1.0 + np.exp(1.0 - linear))
    regression = 20.0 + 3.0 * linear + rng.normal(0.0, 1.0, n)
    stamps = (t * 1000).astype(np.int64).tolist()
    x1, x2, x3 = (np.round(x[name], 4).tolist() for name in ("x1", "x2", "x3"))
    amounts, latencies = np.round(amount, 2).tolist(), np.round(latency, 2).tolist()
    scores, values = np.round(score, 5).tolist(), np.round(regression, 3).tolist()
    channels, arrivals = channel.tolist(), arrival.tolist()
    events: list[tuple[float, bytes, bytes]] = []
    for i in range(n):
        outputs: dict[str, Any] = (
            {"score": scores[i], "prediction": int(scores[i] > 0.5)}
            if model in CLASSIFIERS
            else {"prediction": values[i]}
        )
        event = {
            "event_id": f"{model}-{i}",
            "model_id": model,
            "model_version": "1",
            "timestamp": stamps[i],
            "features": {
                "x1": x1[i],
                "x2": x2[i],
                "x3": x3[i],
                "amount": amounts[i],
                "channel": channels[i],
            },
            **outputs,
            "latency_ms": latencies[i],
        }
        key = event["event_id"] if model == SPREAD else model
        events.append((arrivals[i], msgspec.json.encode(event), key.encode()))
    if model in LABELLED:
        known = np.flatnonzero(rng.random(n) < 0.2)
        outcome = rng.random(n) < score
        # A regressor's truth: its prediction's mean, its noise drawn anew.
        truth = None if model in CLASSIFIERS else 20.0 + 3.0 * linear + rng.normal(0.0, 1.0, n)
        for i in known.tolist():
            label = {
                "event_id": f"{model}-{i}",
                "model_id": model,
                "label": int(outcome[i]) if truth is None else round(float(truth[i]), 3),
                "timestamp": stamps[i] + int(LABEL_DELAY * 1000),
            }
            key = label["event_id"] if model == SPREAD else model
            events.append((arrivals[i] + LABEL_DELAY, msgspec.json.encode(label), key.encode()))
    return events


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spread model's pinned reference: the eight hours before the stream, its
    predictions only (its outcome reference is pooled by its owner from the first merged
    labelled windows)."""
    path = tmp_path_factory.mktemp("reference") / "reference.jsonl"
    events = _model_events(len(MODELS), SPREAD, START - HOURS * 3600, 10_000)
    path.write_bytes(b"\n".join(value for _, value, _ in events if b'"label"' not in value))
    return path


@pytest.fixture(scope="module")
def stream() -> Stream:
    assert sorted(HOME.values()) == list(range(PARTITIONS)), f"models not one a partition: {HOME}"
    models = (*MODELS, SPREAD)
    timed = [e for index, model in enumerate(models) for e in _model_events(index, model)]
    timed.sort(key=itemgetter(0))
    labels = sum(1 for _, value, _ in timed if b'"label"' in value)
    keys = [key for _, _, key in timed]
    return Stream(
        [value for _, value, _ in timed],
        keys,
        [HOME.get(k) or partition_of(k) for k in map(bytes.decode, keys)],
        predictions=len(timed) - labels,
        labels=labels,
    )


class Committed:
    """The committed offset of each partition of ``topic`` in ``group``, read through one
    admin client (cheap enough to ask every few tens of milliseconds); none while the
    group's coordinator is not available."""

    def __init__(self, kafka: str, group: str, topic: str) -> None:
        self.group, self.topic = group, topic
        self.admin = KafkaAdminClient(bootstrap_servers=kafka)

    def __call__(self) -> dict[int, int]:
        try:
            offsets = self.admin.list_group_offsets({self.group: None})[self.group]
        except KafkaError:  # a fresh broker's group coordinator comes up with the first group
            return {}
        return {
            tp.partition: int(meta.offset)
            for tp, meta in offsets.items()
            if tp.topic == self.topic and meta.offset >= 0
        }

    def close(self) -> None:
        self.admin.close()


@dataclass
class Instance:
    """One ``streamwatch run`` of a group: its own env, state file, outbox and alert file,
    and (scaled out) its own static member name."""

    name: str
    directory: Path
    env: Path
    daemon: Daemon = field(init=False)

    @classmethod
    def start(
        cls,
        kafka: str,
        topic: str,
        group: str,
        changelog: str,
        directory: Path,
        pinned: Path,
        static: bool = True,
        webhook: str | None = None,
    ) -> Instance:
        directory.mkdir(parents=True)
        static_member = {"kafka__group_instance_id": directory.name} if static else {}
        hook = (
            {} if webhook is None else {"sinks__hook__kind": "webhook", "sinks__hook__url": webhook}
        )
        env = env_file(
            directory / "daemon.env",
            kafka__bootstrap_servers=kafka,
            kafka__topics=json.dumps([topic]),
            kafka__group_id=group,
            window__size=f"{WINDOW:g}s",
            window__allowed_lateness="2m",
            sinks__audit__kind="file",
            sinks__audit__path=directory / "alerts.jsonl",
            state__path=directory / "state.sqlite",
            state__checkpoint_interval=f"{CHECKPOINT_INTERVAL:g}s",
            state__changelog_topic=changelog,
            state__spread_models=json.dumps([SPREAD]),
            reference__path=pinned,
            server__port=0,
            **static_member,
            **hook,
        )
        instance = cls(directory.name, directory, env)
        instance.daemon = Daemon(env, directory / "run.log").start()
        return instance

    @property
    def alerts(self) -> Path:
        return self.directory / "alerts.jsonl"

    @property
    def running(self) -> bool:
        return self.daemon.process is not None

    def logs(self) -> list[dict[str, Any]]:
        return self.daemon.logs()

    def held(self) -> int:
        """Its outbox's notifications held until the next checkpoint."""
        path = self.directory / "state.sqlite.outbox"
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
                (n,) = db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'held'").fetchone()
        except sqlite3.OperationalError:  # not there yet
            return 0
        return int(n)

    def check_running(self) -> None:
        """Fail at once, with the end of its log, if the process has exited."""
        process = self.daemon.process
        if process is not None and process.poll() is not None:
            tail = "\n".join(self.daemon.log_path.read_text().splitlines()[-30:])
            raise AssertionError(f"{self.name} exited with {process.returncode}:\n{tail}")

    def owned(self) -> set[int]:
        """The partitions it holds, as its "partitions assigned" and "partitions revoked"
        lines tell (cooperative rebalancing names only what changes)."""
        owned: set[int] = set()
        for line in self.logs():
            if line["message"] == "partitions assigned":
                owned |= {int(name.rsplit(":", 1)[1]) for name in line["partitions"]}
            elif line["message"].startswith("partitions revoked"):
                owned -= {int(name.rsplit(":", 1)[1]) for name in line["partitions"]}
        return owned

    def restored(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Its "partition restored" lines logged since ``since``."""
        return [
            line
            for line in self.logs()
            if line["message"] == "partition restored" and logged_at(line) >= since
        ]

    def checkpoints(self) -> int:
        """How many checkpoints it has written (its /metrics); 0 before the server is up."""
        addresses = [line["address"] for line in self.logs() if "address" in line]
        if not addresses:
            return 0
        with urllib.request.urlopen(f"http://{addresses[0]}/metrics", timeout=5) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("streamwatch_checkpoint_seconds_count "):
                return int(float(line.split()[1]))
        return 0


def wait_until_committed(
    committed: Committed, ends: dict[int, int], instances: Sequence[Instance], what: str
) -> None:
    def done() -> bool:
        for instance in instances:
            instance.check_running()
        return committed() == ends

    try:
        wait_for(done, TIMEOUT, what, every=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: committed {committed()}, end offsets {ends}") from None


def wait_until_merged(kafka: str, group: str, partials: str) -> None:
    """Every partial published (before the commits of its partition) consumed by the
    spread model's owner, and so merged. (Partitions no partial went to have no offset.)"""
    committed = Committed(kafka, group, partials)

    def merged() -> bool:
        ends, done = end_offsets(kafka, partials), committed()
        return any(ends.values()) and all(done.get(p, 0) == end for p, end in ends.items())

    try:
        wait_for(merged, TIMEOUT, "partials merged", every=0.5)
    finally:
        committed.close()


def settled(instances: Sequence[Instance]) -> bool:
    """Every partition held by exactly one of the running instances, each holding some."""
    held = [instance.owned() for instance in instances if instance.running]
    for instance in instances:
        instance.check_running()
    return all(held) and sum(map(len, held)) == PARTITIONS == len(set().union(*held))


def ownership(instances: Sequence[Instance]) -> dict[str, list[int]]:
    return {i.name: sorted(i.owned()) for i in instances if i.running}


class Notified:
    """A condition that stops ``instance`` (SIGSTOP) once it has committed each of its
    partitions past ``since`` (so the changelog holds its state of them, ahead of any
    other instance's state file) and has closed a window that notifies since its last
    checkpoint (the notification held in its outbox). Killed then, it loses work that the
    partitions' next owners must redo from the changelog on, the notification with it."""

    def __init__(self, instance: Instance, committed: Committed, since: dict[int, int]) -> None:
        self.instance, self.committed, self.since = instance, committed, since

    def __call__(self) -> bool:
        self.instance.check_running()
        if not self.instance.held():
            return False
        process = self.instance.daemon.process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)  # frozen as it is, while we look
        owned = self.instance.owned()
        offsets = self.committed()
        if self.instance.held() and all(offsets.get(p, 0) > self.since[p] for p in owned):
            return True
        os.kill(process.pid, signal.SIGCONT)
        return False


def produce_paced(kafka: str, topic: str, values: list[bytes], keys: list[bytes]) -> None:
    """In twenty steps a quarter of a second apart: windows close while it comes."""
    step = -(-len(values) // 20)
    for k in range(0, len(values), step):
        produce_keyed(kafka, topic, values[k : k + step], keys[k : k + step])
        time.sleep(0.25)


def stop_all(instances: Iterable[Instance]) -> dict[str, int]:
    """SIGTERM the running instances at once; their exit codes."""
    running = [i for i in instances if i.running]
    with ThreadPoolExecutor(max_workers=max(len(running), 1)) as pool:
        codes = pool.map(lambda i: i.daemon.stop(timeout=60), running)
        return {i.name: code for i, code in zip(running, codes, strict=True)}


@dataclass
class ScaleOut:
    """What the scaled-out run did, for the tests to look at."""

    changelog: str
    instances: list[Instance]  # sw-1, sw-2, sw-3 started together; sw-4 later
    victim: Instance
    victim_partitions: set[int]
    killed_at: float
    fourth: Instance


@dataclass
class Reference:
    changelog: str
    instance: Instance


@pytest.fixture(scope="module")
def topic(kafka: str) -> str:
    return create_topic(kafka, PARTITIONS)


@pytest.fixture(scope="module")
def webhook() -> Iterator[Receiver]:
    """One webhook receiver shared by the instances of the group; it accepts all."""

    def accept(got: Received) -> Reply:
        return (204, {})

    with receiving(accept) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def scaled_out(
    kafka: str,
    topic: str,
    stream: Stream,
    pinned: Path,
    webhook: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ScaleOut]:
    """Three instances, one SIGKILLed mid-stream, a fourth added, over the stream produced
    in three parts; stopped once all is committed and each has checkpointed since the
    last part."""
    directory = tmp_path_factory.mktemp("scale-out")
    group, changelog = f"g-multi-{uuid.uuid4().hex[:8]}", f"sw-changelog-{uuid.uuid4().hex[:8]}"
    committed = Committed(kafka, group, topic)
    instances: list[Instance] = []

    def start(name: str) -> Instance:
        instances.append(
            Instance.start(
                kafka, topic, group, changelog, directory / name, pinned, webhook=webhook.url
            )
        )
        return instances[-1]

    first, second = (int(len(stream.values) * cut) for cut in PARTS)
    try:
        # Part 1, then three instances started together: each takes its share, caught up.
        produce_keyed(kafka, topic, stream.values[:first], stream.keys[:first])
        assert end_offsets(kafka, topic) == stream.ends(first), "not keyed by model id?"
        for name in ("sw-1", "sw-2", "sw-3"):
            start(name)
        wait_until_committed(committed, stream.ends(first), instances, "part 1 committed")
        wait_for(lambda: settled(instances), TIMEOUT, "each of three holding partitions")

        # Part 2, produced while they run: the instance of fraud's partition is killed
        # right after it closed a window that notifies, before its next checkpoint (its
        # notification held, unsent), and expelled from the group.
        victim = next(i for i in instances if HOME["fraud"] in i.owned())
        victim_partitions = victim.owned()
        notified = Notified(victim, committed, stream.ends(first))
        with ThreadPoolExecutor(max_workers=1) as pool:
            producing = pool.submit(
                produce_paced, kafka, topic, stream.values[first:second], stream.keys[first:second]
            )
            wait_for(notified, 60, f"{victim.name} notifying since its checkpoint", every=0.02)
            victim.daemon.kill()
            killed_at, committed_at_kill = time.time(), committed()
            expel_member(kafka, group, victim.name)
            producing.result()
        done = sum(committed_at_kill.values())
        assert sum(stream.ends(first).values()) <= done < sum(stream.ends(second).values()), (
            f"killed when {done} of {len(stream.values)} were committed: not in part 2"
        )

        # Its partitions move to the two others; then a fourth instance joins.
        survivors = [i for i in instances if i.running]
        wait_for(
            lambda: victim_partitions <= set().union(*(i.owned() for i in survivors)),
            TIMEOUT,
            f"{victim.name}'s partitions {sorted(victim_partitions)} taken over",
        )
        fourth = start("sw-4")
        wait_for(lambda: settled(instances) and fourth.owned(), TIMEOUT, "sw-4 holding some")
        wait_until_committed(committed, stream.ends(second), instances, "part 2 committed")

        # Part 3, once the fourth holds partitions: every running instance has work.
        before = {i.name: i.checkpoints() for i in instances if i.running}
        produce_keyed(kafka, topic, stream.values[second:], stream.keys[second:])
        assert end_offsets(kafka, topic) == stream.ends(len(stream.values))
        wait_until_committed(committed, stream.ends(len(stream.values)), instances, "all")
        wait_until_merged(kafka, group, f"{changelog}.partials")
        try:
            wait_for(
                lambda: all(i.checkpoints() > before[i.name] for i in instances if i.running),
                60,
                "a checkpoint of each running instance since part 3",
            )
        except AssertionError as exc:
            now = {i.name: i.checkpoints() for i in instances if i.running}
            raise AssertionError(f"{exc}: {before} then {now}, {ownership(instances)}") from None
        codes = stop_all(instances)
        assert set(codes.values()) == {0}, f"exit codes of the SIGTERMed instances: {codes}"
        yield ScaleOut(changelog, instances, victim, victim_partitions, killed_at, fourth)
    finally:
        committed.close()
        for instance in instances:
            if instance.running:
                instance.daemon.kill()


@pytest.fixture(scope="module")
def reference(
    kafka: str,
    topic: str,
    stream: Stream,
    pinned: Path,
    scaled_out: ScaleOut,  # which produces the stream: the whole topic is there after it
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Reference]:
    """One instance over the whole topic, in its own group with its own changelog. (Not
    scaled out, one watermark for the spread model would run ahead with whichever
    partition is read furthest, and the others' events would be late: see README.)"""
    group, changelog = f"g-single-{uuid.uuid4().hex[:8]}", f"sw-changelog-{uuid.uuid4().hex[:8]}"
    committed = Committed(kafka, group, topic)
    directory = tmp_path_factory.mktemp("single") / "single"
    instance = Instance.start(kafka, topic, group, changelog, directory, pinned, static=False)
    try:
        ends = stream.ends(len(stream.values))
        wait_until_committed(committed, ends, [instance], "the single instance done")
        wait_until_merged(kafka, group, f"{changelog}.partials")
        wait_for(lambda: instance.checkpoints() > 0, 60, "a checkpoint of the single instance")
        assert instance.daemon.stop(timeout=60) == 0
        yield Reference(changelog, instance)
    finally:
        committed.close()
        if instance.running:
            instance.daemon.kill()


def window_verdicts(instances: Iterable[Instance]) -> list[tuple[Window, Verdict]]:
    return closed_windows([i.daemon for i in instances])


def phase(notification: dict[str, Any]) -> str:
    """Whether a notification is of a window's statistics or of its labelled outcomes."""
    detectors = {a["labels"]["detector"] for a in changed(notification)}
    outcomes = detectors <= OUTCOME_DETECTORS
    assert outcomes or not detectors & OUTCOME_DETECTORS, f"mixed: {notification['id']}"
    return "outcomes" if outcomes else "window"


def ids_by_window(sinks: Iterable[Path]) -> dict[tuple[str, str, str], set[str]]:
    """(model, window start, phase) -> the notification ids sent for it, over ``sinks``."""
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for sink in sinks:
        for n in notifications(sink):
            ids[(n["groupLabels"]["model"], n["window"]["start"], phase(n))].add(str(n["id"]))
    return dict(ids)


def changed(notification: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerts that changed in a notification (not those still firing beside them)."""
    return [a for a in notification["alerts"] if a["fingerprint"] in notification["changed"]]


def no_bad_events(instance: Instance) -> list[str]:
    """What says that an event of this run was bad, late or dead-lettered."""
    problems = [
        f"{instance.name}: {line['message']}: {line.get('reason')} {line.get('detail')}"
        for line in instance.logs()
        if line["message"] == "bad event"
    ]
    if not instance.running and any(line["message"] == "stopped" for line in instance.logs()):
        summary = stopped(instance.daemon)
        for counted in ("bad", "late", "dead_letters"):
            if summary[counted]:
                problems.append(f"{instance.name}: {counted} = {summary[counted]}")
    return problems


def test_the_single_instance_closes_every_window_once_and_alerts_on_the_planted_drift(
    kafka: str, stream: Stream, reference: Reference
) -> None:
    """The reference the scaled-out run is compared with is itself right."""
    summary = stopped(reference.instance.daemon)
    partials = sum(end_offsets(kafka, f"{reference.changelog}.partials").values())
    assert partials > 0
    assert summary["consumed"] == len(stream.values) + partials, summary
    assert summary["windowed"] == stream.predictions, summary
    assert summary["labels"] == stream.labels, summary
    assert (summary["bad"], summary["late"], summary["redelivered"]) == (0, 0, 0), summary
    assert summary["dead_letters"] == 0, summary
    assert no_bad_events(reference.instance) == []

    windows = window_verdicts([reference.instance])
    assert len(windows) == len(dict(windows)), "a window closed twice in one run"
    per_model = Counter(model for (model, _, role), _ in windows if role != "outcomes")
    assert per_model == dict.fromkeys(OWNER, WINDOWS_CLOSED), per_model
    assert sum(per_model.values()) == summary["windows_closed"]
    assert {role for (_, _, role), _ in windows} == {"reference", "evaluated", "outcomes"}
    assert {model for (model, _, role), _ in windows if role == "outcomes"} == LABELLED

    sent = notifications(reference.instance.alerts)
    drift_windows = {isoformat(SHIFT_AT - SHIFT_AT % WINDOW + k * WINDOW) for k in (0, 1)}
    firing = {
        (a["labels"]["model"], a["labels"]["subject"])
        for n in sent
        for a in changed(n)
        if a["status"] == "firing"
        and a["labels"]["detector"] == "feature_drift"
        and n["window"]["start"] in drift_windows
    }
    assert set(DRIFTED.items()) <= firing, f"planted drift {DRIFTED}, firing at the shift {firing}"
    counts = delivered(reference.instance.alerts)
    assert counts, "the single instance sent no notification"
    assert set(counts.values()) == {1}, counts


def test_the_partitions_of_the_killed_instance_and_of_the_new_one_come_from_the_changelog(
    scaled_out: ScaleOut,
) -> None:
    s = scaled_out
    # The victim had committed (so written to the changelog) each of its partitions past
    # anything another instance's state file holds of them: the changelog is ahead.
    restores = [
        (line["partition"], i.name, line["from"])
        for i in s.instances
        if i is not s.victim
        for line in i.restored(since=s.killed_at)
        if line["partition"] in s.victim_partitions
    ]
    held = f"{s.victim.name} held {sorted(s.victim_partitions)}; restored after its kill"
    assert {p for p, _, _ in restores} == s.victim_partitions, f"{held}: {restores}"
    assert {origin for _, _, origin in restores} == {"changelog"}, f"{held}: {restores}"

    # The fourth has no state file of its own: all it holds comes from the changelog.
    fourth = {line["partition"]: line["from"] for line in s.fourth.restored()}
    assert fourth, "sw-4 restored no partition"
    assert set(fourth.values()) == {"changelog"}, fourth
    summary = stopped(s.fourth.daemon)
    assert summary["consumed"] - summary["redelivered"] > 0, summary

    # What the victim did after its last commit was done again, and only that: a
    # rebalance (a revocation) checkpoints and commits first, so nothing else repeats.
    evaluations = Counter(window for window, _ in window_verdicts(s.instances))
    again = {window for window, n in evaluations.items() if n > 1}
    assert again, f"no window was evaluated twice: {s.victim.name} lost no work at its kill"
    victim_models = {m for m, p in OWNER.items() if p in s.victim_partitions}
    elsewhere = sorted(w for w in again if w[0] not in victim_models)
    assert not elsewhere, f"evaluated twice, not of {sorted(victim_models)}: {elsewhere[:20]}"


def test_no_event_was_bad_late_or_dead_lettered(scaled_out: ScaleOut) -> None:
    problems = [p for i in scaled_out.instances for p in no_bad_events(i)]
    assert problems == []


def test_no_instance_logged_an_error(scaled_out: ScaleOut, reference: Reference) -> None:
    """Warnings may come (a commit refused while the group rebalances); errors of
    streamwatch's may not. (kafka-python's own selector now and then logs a socket it
    closed under it during a rebalance, at error level, and carries on.)"""
    errors = [
        f"{i.name}: {line}"
        for i in [*scaled_out.instances, reference.instance]
        for line in i.logs()
        if line["level"] in {"error", "critical"} and line["logger"].startswith("streamwatch")
    ]
    assert errors == []
    for i in [*scaled_out.instances, reference.instance]:
        raw = [line for line in i.daemon.log_path.read_text().splitlines() if line[:1] != "{"]
        assert raw == [], f"{i.name} printed outside its JSON log: {raw[:5]}"


def test_the_group_closes_the_windows_of_the_single_instance_with_the_same_statistics(
    scaled_out: ScaleOut, reference: Reference
) -> None:
    expected = dict(window_verdicts([reference.instance]))
    logged = window_verdicts(scaled_out.instances)
    got = dict(logged)
    missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    assert not missing, f"{len(missing)} windows never closed, e.g. {missing[:10]}"
    assert not extra, f"{len(extra)} windows the single instance did not close: {extra[:10]}"
    # Every time a window was logged, by whichever instance: one killed, the one that redid
    # it after the kill, the same verdict (events, digest of every statistic).
    differing = [
        (window, verdict, expected[window])
        for window, verdict in logged
        if verdict != expected[window]
    ]
    assert not differing, f"{len(differing)} (window, got, expected), e.g. {differing[:10]}"


def performance_windows(
    instances: Iterable[Instance],
) -> dict[float, dict[tuple[str, str], tuple[float, dict[str, float]]]]:
    """The spread model's performance findings (value, details) by labelled window start,
    from the instances' histories; a window that two instances evaluated (the victim
    and its successor) must have the same findings in both."""
    windows: dict[float, dict[tuple[str, str], tuple[float, dict[str, float]]]] = {}
    for instance in instances:
        for record in history.read(instance.directory / "state.sqlite", SPREAD):
            found = {
                (s.subject, s.statistic): (s.value, s.details)
                for s in record.statistics
                if s.detector == "performance"
            }
            if record.role == "outcomes" and found:
                assert windows.setdefault(record.start, found) == found, record.start
    return windows


def test_the_spread_models_labelled_windows_have_the_performance_of_the_single_instance(
    scaled_out: ScaleOut, reference: Reference
) -> None:
    """Its labels joined in each partition, their outcomes merged by its owner: the
    performance of each window as the single instance found it. (Equal up to the last
    bits: a partition sums a window's losses batch by batch, and the two read the topic
    in other batches.)"""
    expected = performance_windows([reference.instance])
    got = performance_windows(scaled_out.instances)
    # Labels are due an hour (the label horizon) after their window; the first windows
    # make the outcome reference.
    assert len(expected) > WINDOWS_CLOSED // 2, sorted(expected)
    assert got.keys() == expected.keys()
    for start, findings in expected.items():
        assert got[start].keys() == findings.keys(), start
        for key, (value, details) in findings.items():
            got_value, got_details = got[start][key]
            assert got_value == pytest.approx(value, rel=1e-9, nan_ok=True), (start, key)
            assert got_details == pytest.approx(details, rel=1e-9, nan_ok=True), (start, key)


def test_the_group_sends_the_notifications_of_the_single_instance_one_id_a_window(
    scaled_out: ScaleOut, reference: Reference
) -> None:
    expected = set(delivered(reference.instance.alerts))
    per_sink = {i.name: delivered(i.alerts) for i in scaled_out.instances}
    got = set().union(*per_sink.values())
    assert got - expected == set(), "notifications the single instance did not send"
    lost = [
        (n["groupLabels"]["model"], n["window"]["start"], n["id"])
        for n in notifications(reference.instance.alerts)
        if n["id"] not in got
    ]
    assert not lost, f"{len(lost)} notifications never sent (model, window, id): {lost[:20]}"
    for name, counts in per_sink.items():
        assert set(counts.values()) <= {1}, f"{name} appended an id twice: {counts}"

    sinks = [i.alerts for i in scaled_out.instances]
    ids = ids_by_window(sinks)
    several = {window: found for window, found in ids.items() if len(found) > 1}
    assert not several, f"a model's window notified under several ids: {several}"
    assert ids == ids_by_window([reference.instance.alerts])
    drifted = set(DRIFTED.items())
    firing = {
        (a["labels"]["model"], a["labels"]["subject"])
        for sink in sinks
        for n in notifications(sink)
        for a in n["alerts"]
        if a["status"] == "firing" and a["labels"]["detector"] == "feature_drift"
    }
    assert drifted <= firing, firing


def test_each_changelog_is_compacted_and_it_and_its_partials_have_the_sources_partitions(
    kafka: str, scaled_out: ScaleOut, reference: Reference
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    topics = [
        (topic, policy)
        for changelog in (scaled_out.changelog, reference.changelog)
        for topic, policy in ((changelog, "compact"), (f"{changelog}.partials", "delete"))
    ]
    try:
        for topic, wanted in topics:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic)
            configs = admin.describe_configs([resource], config_filter="all")
            policy = configs["topic"][topic]["cleanup.policy"]["value"]
            assert policy == wanted, f"{topic}: cleanup.policy={policy}"
            (described,) = admin.describe_topics([topic])
            assert described["error_code"] == 0, described
            assert len(described["partitions"]) == PARTITIONS, described["partitions"]
    finally:
        admin.close()


def test_a_static_member_restarted_within_its_session_gets_its_partitions_back_from_its_file(
    kafka: str, stream: Stream, pinned: Path, tmp_path: Path
) -> None:
    """Static membership: SIGTERMed, an instance does not leave the group; restarted
    within the session timeout, it is given its partitions again without a rebalance
    (the other instance sees none) and restores them from its own state file."""
    topic = create_topic(kafka, PARTITIONS)
    group, changelog = f"g-static-{uuid.uuid4().hex[:8]}", f"sw-changelog-{uuid.uuid4().hex[:8]}"
    committed = Committed(kafka, group, topic)
    first, second = (int(len(stream.values) * cut) for cut in (0.1, 0.2))
    produce_keyed(kafka, topic, stream.values[:first], stream.keys[:first])
    instances = [
        Instance.start(kafka, topic, group, changelog, tmp_path / name, pinned)
        for name in ("a", "b")
    ]
    try:
        wait_until_committed(committed, stream.ends(first), instances, "part 1 committed")
        wait_for(lambda: settled(instances), TIMEOUT, "each of two holding partitions")
        a, b = instances
        held = a.owned()
        assert a.daemon.stop(timeout=60) == 0
        restarted_at = time.time()
        a.daemon.start()
        produce_keyed(kafka, topic, stream.values[first:second], stream.keys[first:second])
        wait_until_committed(committed, stream.ends(second), instances, "part 2 committed")
        restored = {line["partition"]: line["from"] for line in a.restored(restarted_at)}
        assert restored == dict.fromkeys(held, "state file")
        moves = [
            line
            for line in b.logs()
            if line["message"].startswith("partitions ") and logged_at(line) >= restarted_at
        ]
        assert moves == [], f"b saw a rebalance while a restarted: {moves}"
    finally:
        committed.close()
        stop_all(instances)


def test_across_every_file_sink_and_the_shared_webhook_each_notification_arrives_once(
    scaled_out: ScaleOut, reference: Reference, webhook: Receiver
) -> None:
    """The victim was killed holding a notification of a window its successor closed
    again: the successor sent it, the victim never did; nothing else was sent twice."""
    expected = delivered(reference.instance.alerts)
    assert expected
    files = Counter[str]()
    for instance in scaled_out.instances:
        files.update(delivered(instance.alerts))
    twice = {i: n for i, n in files.items() if n > 1}
    assert not twice, f"ids in more than one instance's file: {twice}"
    assert set(files) == set(expected)
    hooked = Counter(got.headers["webhook-id"] for got in webhook.requests)
    assert {i: n for i, n in hooked.items() if n > 1} == {}
    assert set(hooked) == set(expected)
