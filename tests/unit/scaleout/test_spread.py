"""Spread models: keyed by event id over every partition, each partition's closed
windows and labelled windows merged by the model's owner (an in-memory changelog and
partials topic here; tests/integration/test_scale_out.py runs the real ones). The
aggregate's merge and order are in test_spread_aggregate.py, a partition's labelled
outcomes in test_spread_outcomes.py."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from streamwatch.config import (
    LabelSettings,
    ReferenceSettings,
    Settings,
    StateSettings,
    WindowSettings,
)
from streamwatch.errors import ConfigError, StateError
from streamwatch.events import Message, Origin, decode_batch
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.conclusion import Produced
from streamwatch.pipeline.engine import Engine
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.pipeline.reference import load_reference
from streamwatch.scaleout.spread import Part, Partial
from streamwatch.scaleout.spread_aggregate import Aggregate
from streamwatch.state.store import FORMAT, StateStore
from tests.factories import FakeChangelog, event

PARTITIONS = 3
MINUTES = 20
PER_MINUTE = 150
SHIFT_FROM = 12  # x moves by 3 (its range is 1) from this minute on
WORSE_FROM = 14  # labels agree with four predictions in ten (eight before) from this minute
LABEL_DELAY = 20_000  # milliseconds; the label horizon is 30 s
START = 1_700_000_040  # epoch seconds, on a minute
Stats = dict[float, tuple[int, list[tuple[str, str, str, float]]]]


def x_of(i: int) -> float:
    return ((i * 7919) % PER_MINUTE) / PER_MINUTE


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return write_reference(tmp_path)


def write_reference(tmp: Path) -> Path:
    """Model "s"'s pinned reference: three minutes of predictions, a day before."""
    path = tmp / "reference.jsonl"
    lines = [
        event(f"r{i}", model_id="s", timestamp=(START - 86_400) * 1000 + i, features={"x": x_of(i)})
        for i in range(3 * PER_MINUTE)
    ]
    path.write_bytes(b"\n".join(lines))
    return path


def settings(tmp: Path, name: str, reference: Path, scaled: bool = True) -> Settings:
    return Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        reference=ReferenceSettings(path=reference),
        labels=LabelSettings(horizon="30s"),
        state=StateSettings(
            path=tmp / f"{name}.sqlite",
            changelog_topic="cl" if scaled else None,
            spread_models=["s"] if scaled else [],
        ),
    )


def scaled(s: Settings, log: FakeChangelog) -> Engine:
    pinned = load_reference(s.reference.path or Path(), s)
    return Engine(s, [], Metrics(CollectorRegistry()), pinned, changelog=log)  # type: ignore[arg-type]


def stream(labelled: bool = False) -> list[Message]:
    """Model "s" in event-time order, keyed by event id: spread over every partition;
    ``labelled``: a classifier's, each prediction labelled 20 s after it."""
    timed: list[tuple[int, bytes, str]] = []
    for minute in range(MINUTES):
        for i in range(PER_MINUTE):
            event_id = f"{minute}-{i}"
            x = x_of(i) + (3.0 if minute >= SHIFT_FROM else 0.0)
            time = (START + minute * 60) * 1000 + i * 400
            outputs = {"score": x_of(i), "prediction": int(x_of(i) > 0.5)} if labelled else {}
            raw = event(event_id, model_id="s", timestamp=time, features={"x": x}, **outputs)
            timed.append((time, raw, event_id))
            if labelled:
                agrees = i % 10 < (4 if minute >= WORSE_FROM else 8)
                label = outputs["prediction"] if agrees else 1 - outputs["prediction"]
                body = {"event_id": event_id, "model_id": "s", "label": label}
                label_time = time + LABEL_DELAY
                timed.append(
                    (label_time, msgspec.json.encode({**body, "timestamp": label_time}), event_id)
                )
    timed.sort(key=lambda t: t[0])
    messages: list[Message] = []
    offsets = [0] * PARTITIONS
    for _, raw, event_id in timed:
        p = zlib.crc32(event_id.encode()) % PARTITIONS
        messages.append(Message(raw, Origin("t", p, offsets[p])))
        offsets[p] += 1
    return messages


def evaluated(outcomes: Sequence[Produced]) -> Stats:
    """Each evaluated window's events and statistics, by start; a window evaluated twice
    must not be."""
    windows: Stats = {}
    for outcome in outcomes:
        for w in outcome.closed:
            if w.role == "evaluated":
                assert w.bounds.start not in windows, w.bounds
                stats = sorted(
                    (f.detector, f.subject, f.statistic, round(f.value, 9))
                    for f in w.findings
                    if f.detector != "aggregation"  # (only a spread model's windows have it)
                )
                windows[w.bounds.start] = (w.n, stats)
    return windows


class Cluster:
    """Engines sharing a changelog, each polling its partitions from its positions."""

    def __init__(self, tmp: Path, reference: Path, labelled: bool = False) -> None:
        self.tmp, self.reference = tmp, reference
        self.log = FakeChangelog(PARTITIONS)
        self.source: dict[int, list[Message]] = {p: [] for p in range(PARTITIONS)}
        for message in stream(labelled):
            self.source[message[1].partition].append(message)
        self.engines: dict[str, tuple[Engine, StateStore]] = {}
        self.owners: dict[int, str] = {}
        self.outcomes: list[Produced] = []

    def start(self, name: str, partitions: set[int]) -> Engine:
        s = settings(self.tmp, name, self.reference)
        engine = scaled(s, self.log)
        store = StateStore(s.state.path, s)
        self.engines[name] = (engine, store)
        engine.rebalance.acquire(partitions, store)
        self.owners.update(dict.fromkeys(partitions, name))
        return engine

    def move(self, partition: int, to: str) -> None:
        engine, store = self.engines[self.owners[partition]]
        engine.rebalance.release({partition}, store)
        self.engines[to][0].rebalance.acquire({partition}, self.engines[to][1])
        self.owners[partition] = to

    def crash(self, name: str) -> int:
        """Whatever ``name`` processed since its checkpoint is lost; it starts again from
        its state file. Return how many messages it has to process again."""
        engine, store = self.engines.pop(name)
        store.close()
        owned = {p for p, owner in self.owners.items() if owner == name}
        again = self.start(name, owned)
        return sum(o - again.positions.next.get(tp, 0) for tp, o in engine.positions.next.items())

    def round(self, chunk: int, checkpoint: bool = True) -> None:
        for name, (engine, _) in self.engines.items():
            batch = []
            for p in (p for p, owner in self.owners.items() if owner == name):
                start = engine.positions.next.get(("t", p), 0)
                batch += self.source[p][start : start + chunk]
                done = engine.positions.next.get(("cl.partials", p), 0)
                partials = self.log.partials.get(p, [])[done:]
                batch += [
                    Message(v, Origin("cl.partials", p, done + k)) for k, v in enumerate(partials)
                ]
            self.outcomes.append(engine.process(batch))
        for engine, store in self.engines.values():
            if checkpoint:
                engine.checkpointer.checkpoint(store)

    def close(self) -> None:
        for _, store in self.engines.values():
            store.close()


def test_a_spread_model_is_evaluated_once_per_window_on_the_merge_of_its_partitions(
    tmp_path: Path, reference: Path
) -> None:
    one = settings(tmp_path, "one", reference, scaled=False)
    single = Engine(one, [], Metrics(CollectorRegistry()), load_reference(reference, one))
    messages = stream()
    expected = evaluated(
        [single.process(messages[k : k + 500]) for k in range(0, len(messages), 500)]
    )

    cluster = Cluster(tmp_path, reference)
    cluster.start("a", {0, 1})
    cluster.start("b", {2})
    owner = zlib.crc32(b"s") % PARTITIONS
    for step in range(45):
        if step == 20:  # the owner crashes with partials and events since its checkpoint
            cluster.round(chunk=30, checkpoint=False)
            assert cluster.crash(cluster.owners[owner]) > 30  # events and partials
        cluster.round(chunk=30)
        if step == 10:
            cluster.move(1, "b")  # a rebalance
    cluster.close()

    windows = evaluated(cluster.outcomes)
    last = START + (MINUTES - 1) * 60.0  # never closes: no partition passes its end
    assert windows == {start: stats for start, stats in expected.items() if start < last}
    assert len(windows) == MINUTES - 1
    assert all(n == PER_MINUTE for n, _ in windows.values())
    drifted = {
        w.bounds.start
        for o in cluster.outcomes
        for w in o.closed
        for f in w.findings
        if f.detector == "feature_drift" and f.severity.value == "critical"
    }
    assert drifted == {START + m * 60.0 for m in range(SHIFT_FROM, MINUTES - 1)}


Outcomes = dict[float, dict[tuple[str, str, str], tuple[float, str]]]


def labelled_outcomes(outcomes: Sequence[Produced]) -> Outcomes:
    """Each window's labelled outcomes (value and severity of each statistic), by start;
    a window evaluated again (after a crash) must be found the same."""
    windows: Outcomes = {}
    for outcome in outcomes:
        for w in outcome.closed:
            if w.role == "outcomes":
                stats = {
                    (f.detector, f.subject, f.statistic): (f.value, f.severity.value)
                    for f in w.findings
                    if f.detector != "aggregation"
                }
                assert windows.setdefault(w.bounds.start, stats) == stats, w.bounds
    return windows


def assert_alike(got: Outcomes, expected: Outcomes) -> None:
    """The same windows, statistics and severities, and the same values up to the last
    bits (sums of losses merged from partitions add up in another order)."""
    assert got.keys() == expected.keys()
    for start, stats in expected.items():
        assert got[start].keys() == stats.keys(), start
        for key, (value, severity) in stats.items():
            assert got[start][key][1] == severity, (start, key)
            assert got[start][key][0] == pytest.approx(value, rel=1e-9, abs=1e-12), (start, key)


def test_a_spread_models_labels_are_joined_in_each_partition_and_evaluated_once_merged(
    tmp_path: Path, reference: Path
) -> None:
    one = settings(tmp_path, "one", reference, scaled=False)
    single = Engine(one, [], Metrics(CollectorRegistry()), load_reference(reference, one))
    messages = stream(labelled=True)
    expected = labelled_outcomes(
        [single.process(messages[k : k + 500]) for k in range(0, len(messages), 500)]
    )

    cluster = Cluster(tmp_path, reference, labelled=True)
    cluster.start("a", {0, 1})
    cluster.start("b", {2})
    owner = zlib.crc32(b"s") % PARTITIONS
    for step in range(80):
        if step == 40:  # the owner crashes with shares and labels since its checkpoint
            cluster.round(chunk=30, checkpoint=False)
            assert cluster.crash(cluster.owners[owner]) > 30
        cluster.round(chunk=30)
        if step == 20:
            cluster.move(1, "b")
    cluster.close()

    windows = labelled_outcomes(cluster.outcomes)
    # The last window never closes (no partition passes its end): its labels wait.
    assert sorted(expected) == [START + m * 60.0 for m in range(MINUTES - 1)]
    assert_alike(windows, expected)
    merged = [
        f for o in cluster.outcomes for w in o.closed for f in w.findings if w.role == "outcomes"
    ]
    complete = {(f.value, f.severity.value) for f in merged if f.detector == "aggregation"}
    assert complete == {(0.0, "ok")}
    worse = {
        f.window.start
        for f in merged
        if f.detector == "performance" and f.severity.value == "critical"
    }
    assert worse == {START + m * 60.0 for m in range(WORSE_FROM, MINUTES - 1)}
    bad = sum(e.metrics.total("streamwatch_bad_events") for e, _ in cluster.engines.values())
    assert bad == 0


def test_a_window_waits_for_every_partition_until_the_timeout_then_says_who_was_missing(
    tmp_path: Path, reference: Path
) -> None:
    s = settings(tmp_path, "e", reference)
    judge = ModelMonitor("s", s, load_reference(reference, s)["s"])
    part = Part(judge, 0)
    part.process(decode_batch(stream()[:400], 10**6).columns)
    records = part.partials("x")
    first_window = START // 60
    assert [r.window[0] for r in records if r.window] == [first_window, first_window + 1]
    # Each record says the partition has passed its own window; the last, how far it is.
    assert [r.watermark for r in records] == [START + 60.0, part.windows.watermark]
    aggregate = Aggregate(judge, partitions=3, timeout=60.0)
    for record in records:
        aggregate.receive(record, now=1000.0)
    aggregate.receive(Partial(FORMAT, "x", "s", 1, records[-1].watermark), now=1030.0)
    assert aggregate.due(now=1000.0) == []  # partition 2 has not passed the first window
    assert aggregate.due(now=1059.0) == []
    first, second = aggregate.due(now=1060.0)
    assert (first.n, second.n) == (PER_MINUTE, PER_MINUTE)
    missing = [f for w in (first, second) for f in w.findings if f.detector == "aggregation"]
    assert [(f.value, f.severity.value) for f in missing] == [(1.0, "warning")] * 2
    assert "without partitions 2" in missing[0].explanation
    aggregate.receive(records[0])  # published again after a crash: its window is done
    assert aggregate.pending == {}

    # A window that every partition has passed is evaluated at once, and says so (an
    # alert of a window without some partitions resolves then).
    assert records[0].window is not None
    _, n, blob = records[0].window
    for partition in range(3):
        window = (first_window + 2, n, blob)
        aggregate.receive(Partial(FORMAT, "x", "s", partition, START + 1000.0, window))
    (complete,) = aggregate.due()
    assert complete.n == 3 * n
    (found,) = [f for f in complete.findings if f.detector == "aggregation"]
    assert (found.value, found.severity.value) == (0.0, "ok")

    with pytest.raises(StateError, match="partition 3 of 3"):
        aggregate.receive(Partial(FORMAT, "x", "s", 3, 0.0))
    with pytest.raises(StateError, match="detector state is unreadable"):
        aggregate.receive(Partial(FORMAT, "x", "s", 0, 0.0, (first_window + 9, 1, b"junk")))


def plain(records: Sequence[Partial]) -> list[tuple[Any, ...]]:
    """Records with their shares decoded."""
    return [
        (
            *msgspec.structs.astuple(r)[:-1],
            None if r.outcomes is None else msgspec.msgpack.decode(zlib.decompress(r.outcomes[1])),
        )
        for r in records
    ]


def test_a_part_with_labels_waiting_goes_through_a_checkpoint(
    tmp_path: Path, reference: Path
) -> None:
    s = settings(tmp_path, "e", reference)
    judge = ModelMonitor("s", s, load_reference(reference, s)["s"])
    mine = [m for m in stream(labelled=True) if m[1].partition == 0]
    first, second = (decode_batch(half, 10**6).columns for half in (mine[:500], mine[500:1200]))
    part = Part(judge, 0)
    part.process(first.take(~first.is_label), first.take(first.labelled).events())
    assert part.outcomes.windows  # labels waiting
    assert part.labelled  # shares to publish
    restored = Part(judge, 0)
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(part.snapshot())))
    for p in (part, restored):
        p.process(second.take(~second.is_label), second.take(second.labelled).events())
    # The same records; a share's states alike (encoded, their keys may come in
    # another order).
    assert plain(restored.partials("x")) == plain(part.partials("x"))
    assert restored.outcomes.counts == part.outcomes.counts

    # A part saved before labels were joined has none of theirs.
    older = {k: v for k, v in part.snapshot().items() if k in ("windows", "closed", "published")}
    fresh = Part(judge, 0)
    fresh.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(older)))
    assert (fresh.labelled, fresh.outcomes.windows) == ([], {})
    assert fresh.partials("x")[-1].clock == -math.inf


def test_a_spread_models_labels_are_joined_not_dead_lettered_and_unreadable_partials_are(
    tmp_path: Path, reference: Path
) -> None:
    s = settings(tmp_path, "e", reference)
    e = scaled(s, FakeChangelog(PARTITIONS))
    prediction = event("1", model_id="s", timestamp=1_000, features={"x": 0.5})
    label = msgspec.json.encode({"event_id": "1", "model_id": "s", "timestamp": 2_000, "label": 1})
    e.process(
        [
            Message(prediction, Origin("t", 0, 0)),
            Message(label, Origin("t", 0, 1)),
            Message(b"\x01garbage", Origin("cl.partials", 0, 0)),
        ]
    )
    assert e.metrics.total("streamwatch_bad_events") == 1
    assert e.metrics.total("streamwatch_bad_events", reason="bad_partial") == 1
    assert e.metrics.total("streamwatch_label_events", model="s", outcome="joined") == 1
    assert e.metrics.total("streamwatch_dead_letters") == 0
    (part,) = e.processor.spread.parts.values()
    assert part.outcomes.joined == 1


def test_a_spread_model_needs_a_changelog_time_windows_and_a_pinned_reference(
    tmp_path: Path, reference: Path
) -> None:
    count = WindowSettings(mode="count", size="100")
    with pytest.raises(ValidationError, match=r"CHANGELOG_TOPIC.*WINDOW__MODE=time.*pinned"):
        Settings(window=count, state=StateSettings(spread_models=["s"]))
    other = settings(tmp_path, "e", reference).model_copy(
        update={"state": StateSettings(changelog_topic="cl", spread_models=["s", "busy"])}
    )
    with pytest.raises(ConfigError, match=r"\['busy'\] have no events in REFERENCE__PATH"):
        Engine(other, [], Metrics(CollectorRegistry()), load_reference(reference, other))
