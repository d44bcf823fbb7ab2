from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from streamwatch.batch import Schema
from streamwatch.config import ReferenceSettings, Settings, ShadowSettings, WindowSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.histogram import fit_edges
from streamwatch.detectors.shadow import WAITING_BYTES, Shadow
from streamwatch.events import Event, decode
from streamwatch.join import ENTRY_BYTES, LabelJoin
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.pipeline.reference import Pinned
from tests.factories import event, origin

HOUR = 3_600_000


def hour_of_events(rng: np.random.Generator, hour: int, n: int, shift: float = 0.0) -> list[Event]:
    stamps = np.sort(rng.uniform(hour * HOUR, (hour + 1) * HOUR, n)).astype(int)
    xs = rng.normal(shift, 1.0, n)
    out = []
    for i, (t, x) in enumerate(zip(stamps, xs, strict=True)):
        e = decode(
            event(f"{hour}-{i}", timestamp=int(t), features={"x": float(x)}), origin(), 1 << 20
        )
        assert isinstance(e, Event)
        out.append(e)
    return out


def settings(min_events: int = 1000) -> Settings:
    return Settings(
        window=WindowSettings(size="1h", allowed_lateness=60.0),
        reference=ReferenceSettings(min_events=min_events),
    )


def test_first_windows_pool_into_the_reference_then_windows_are_evaluated() -> None:
    rng = np.random.default_rng(0)
    monitor = ModelMonitor("m", settings(min_events=1000))
    closed = []
    for hour in range(5):
        closed += monitor.process(
            hour_of_events(rng, hour, 600, shift=1.0 if hour == 4 else 0.0)
        ).closed
    closed += monitor.flush().closed
    closed = [w for w in closed if w.role != "outcomes"]  # no labels in this stream
    assert [w.role for w in closed] == [
        "reference",
        "reference",
        "evaluated",
        "evaluated",
        "evaluated",
    ]
    assert monitor.reference.state is not None
    assert monitor.reference.state.n == 1200
    severities = [
        [f.severity for f in w.findings if f.detector == "feature_drift"] for w in closed[2:]
    ]
    assert severities == [[Severity.OK], [Severity.OK], [Severity.CRITICAL]]


def test_events_are_held_back_until_the_grid_is_fitted_on_its_sample() -> None:
    rng = np.random.default_rng(1)
    monitor = ModelMonitor("m", settings())
    # The stream starts just before a window boundary: the first window gets 5 events.
    events = [e for e in hour_of_events(rng, 0, 3000) if e.epoch_seconds > 3599.0]
    events += hour_of_events(rng, 1, 2300)
    assert monitor.process(events[:100]).windowed == 0  # warming up: 100 < grid_sample
    assert monitor.binning.features.edges == {}
    processed = monitor.process(events[100:])
    assert processed.windowed == len(events)
    # The sample is the first grid_sample (2,048) events, however they were batched.
    values = np.array([(e.features or {})["x"] for e in events[:2048]], dtype=np.float64)
    np.testing.assert_array_equal(monitor.binning.features.edges["x"], fit_edges(values))


def test_a_pinned_reference_is_used_from_the_first_window() -> None:
    rng = np.random.default_rng(2)
    schema = Schema()
    pinned = Pinned(schema, schema.build(hour_of_events(rng, 0, 3000)))
    monitor = ModelMonitor("m", settings(), pinned)
    closed = monitor.process(hour_of_events(rng, 5, 800, shift=0.5)).closed + monitor.flush().closed
    closed = [w for w in closed if w.role != "outcomes"]  # no labels in this stream
    assert [w.role for w in closed] == ["evaluated"]
    drift = {
        (f.detector, f.subject): f.severity
        for f in closed[0].findings
        if f.detector != "data_quality"
    }
    assert drift == {
        ("feature_drift", "x"): Severity.CRITICAL,
        ("prediction_drift", "score"): Severity.OK,  # the factory's constant score
        ("operational", "volume"): Severity.WARNING,  # 800 events an hour, not 3,000
    }


def run_in_batches(
    events: list[Event], first: int, size: int, pause_at: int | None = None
) -> list[tuple[int, str, str, str, float]]:
    """Every finding of every window, feeding ``first`` events, then batches of ``size``;
    at ``pause_at`` the model is checkpointed and a fresh monitor resumes from it."""
    monitor = ModelMonitor("m", settings(min_events=1000))
    closed = monitor.process(events[:first]).closed
    for k in range(first, len(events), size):
        if pause_at is not None and k >= pause_at:
            resumed = ModelMonitor("m", monitor.settings)
            resumed.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(monitor.snapshot())))
            monitor, pause_at = resumed, None
        closed += monitor.process(events[k : k + size]).closed
    closed += monitor.flush().closed
    return sorted(
        (w.bounds.index, f.detector, f.subject, f.statistic, round(f.value, 9))
        for w in closed
        for f in w.findings
    )


def test_statistics_do_not_depend_on_batching_or_a_checkpoint_during_warm_up() -> None:
    rng = np.random.default_rng(3)
    events = [e for hour in range(6) for e in hour_of_events(rng, hour, 1500, shift=0.3 * hour)]
    whole = run_in_batches(events, 5000, 5000)
    assert whole  # windows were evaluated
    assert run_in_batches(events, 1000, 700) == whole
    # A checkpoint after 1,000 events: the warm-up (2,048 by default) is not over yet.
    assert run_in_batches(events, 1000, 500, pause_at=1000) == whole


def cycle_hour(rng: np.random.Generator, hour: int, extra: float = 0.0) -> list[Event]:
    # A daily cycle of half a standard deviation, and traffic varying tenfold with it.
    phase = np.sin(2 * np.pi * hour / 24)
    return hour_of_events(rng, hour, int(1100 + 900 * phase), shift=0.5 * phase + extra)


def test_a_reference_spanning_a_day_takes_the_daily_cycle_as_normal() -> None:
    rng = np.random.default_rng(3)
    cycle = Settings(
        window=WindowSettings(size="1h", allowed_lateness=60.0),
        reference=ReferenceSettings(min_events=1000, season=86400.0),
    )
    monitor, plain = ModelMonitor("m", cycle), ModelMonitor("m", settings())
    breaches = {"cycle": 0, "plain": 0}
    for hour in range(24 * 4):
        events = cycle_hour(rng, hour)
        for name, m in (("cycle", monitor), ("plain", plain)):
            for w in m.process(events).closed:
                breaches[name] += sum(f.severity is not Severity.OK for f in w.findings)
    assert monitor.reference.complete
    assert len(monitor.reference.phases) == 24
    assert breaches["cycle"] == 0
    assert breaches["plain"] > 20  # the first hours alone are no reference for the rest
    # A shift beyond the cycle is still found, in its first window.
    monitor.process(cycle_hour(rng, 24 * 4, extra=0.4))
    (closed,) = [w for w in monitor.process(cycle_hour(rng, 24 * 4 + 1)).closed if w.findings]
    assert closed.bounds.start == 24 * 4 * 3600
    (drift,) = [f for f in closed.findings if f.detector == "feature_drift"]
    assert drift.severity is not Severity.OK


def test_the_reference_and_its_bounds_survive_a_snapshot() -> None:
    rng = np.random.default_rng(4)
    cycle = Settings(
        window=WindowSettings(size="1h", allowed_lateness=60.0),
        reference=ReferenceSettings(season=86400.0),
    )
    whole, resumed = ModelMonitor("m", cycle), ModelMonitor("m", cycle)
    for hour in range(8):  # mid-reference: windows still kept apart
        whole.process(cycle_hour(rng, hour))
    resumed.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(whole.snapshot())))
    assert len(resumed.reference.phases) == len(whole.reference.phases) > 0
    rest = [cycle_hour(rng, hour) for hour in range(8, 30)]
    results = [[m.process(events).closed for events in rest] for m in (whole, resumed)]
    assert resumed.reference.complete
    assert whole.reference.complete
    assert [[f for w in ws for f in w.findings] for ws in results[0]] == [
        [f for w in ws for f in w.findings] for ws in results[1]
    ]


def events(n: int, start: int = 0, **fields: Any) -> list[Event]:
    out = []
    for i in range(start, start + n):
        features = fields.get("features") or {"x": float(i % 97), "pad": "p" * 200}
        e = decode(event(f"e{i}", timestamp=1_000 * i, features=features), origin(), 1 << 20)
        assert isinstance(e, Event)
        out.append(e)
    return out


def monitor(**overrides: Any) -> ModelMonitor:
    settings = Settings(window=WindowSettings(mode="count", size="100000"), **overrides)
    return ModelMonitor("m", settings)


def test_the_warm_up_sample_is_cut_where_its_bytes_reach_the_limit() -> None:
    sizes = [len(msgspec.msgpack.encode(e)) for e in events(10)]
    m = monitor(max_sample_bytes=sum(sizes))  # grid_sample is 2048 events
    m.process(events(9))
    assert m.snapshot()["warming_up"]
    held = m.snapshot()["pending"]
    assert sum(map(len, held)) == sum(sizes[:9])  # as large as in the checkpoint
    processed = m.process(events(20, start=9))
    # The grid is fitted on the first ten events (the tenth reached the limit); all 29
    # are windowed, none is held any more.
    assert processed.windowed == 29
    assert not m.snapshot()["warming_up"]
    assert m.snapshot()["pending"] == []
    whole = monitor(max_sample_bytes=sum(sizes))
    whole.process(events(10))  # the same first ten events, otherwise batched
    assert m.binning.snapshot() == whole.binning.snapshot()


def test_a_restored_warm_up_sample_reaches_its_limit_as_before() -> None:
    limit = sum(len(msgspec.msgpack.encode(e)) for e in events(10))
    m = monitor(max_sample_bytes=limit)
    m.process(events(6))
    restored = monitor(max_sample_bytes=limit)
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(m.snapshot())))
    assert restored.process(events(4, start=6)).windowed == 10


def test_feature_names_past_max_columns_are_counted_not_kept() -> None:
    rng = np.random.default_rng(7)
    m = monitor(max_columns=20)
    wide = [
        events(1, start=i, features={f"f{rng.integers(1 << 40):x}": 1.0 for _ in range(50)})[0]
        for i in range(30)
    ]
    m.process(wide)
    held = [msgspec.msgpack.decode(e) for e in m.snapshot()["pending"]]
    names = set().union(*(e["features"] for e in held))
    assert len(names) == 20  # the first twenty in sorted order of the first batch
    assert m.schema.ignored == 30 * 50 - 20
    m.settle()
    assert set(m.schema.features) == names
    m.process(events(1, start=30, features={"new": 1.0}))
    assert m.schema.ignored == 30 * 50 - 20 + 1
    assert m.snapshot()["schema"]["ignored"] == 1481  # a count in the state, no names


def test_labels_held_during_warm_up_keep_only_what_the_join_needs() -> None:
    m = monitor(max_buffer_bytes=4096)
    labels = []
    for i in range(100):
        raw = event(f"e{i}", timestamp=1_000 * i, label=1, features={"x": 1.0, "pad": "p" * 500})
        e = decode(raw.replace(b'"score":0.5,', b""), origin(), 1 << 20)
        assert isinstance(e, Event)
        assert e.is_label
        labels.append(e)
    m.process([], labels)
    held = m.snapshot()["pending_labels"]
    assert all(e["features"] == {} for e in held)
    size = len(msgspec.msgpack.encode(msgspec.convert(held[0], Event)))
    assert len(held) == 4096 // size  # the oldest went, counted as unknown
    assert m.outcomes.join.unknown == 100 - len(held)
    assert [e["event_id"] for e in held] == [f"e{i}" for i in range(100 - len(held), 100)]


def test_the_label_join_holds_at_most_its_bytes() -> None:
    join = LabelJoin(capacity=1_000_000, ttl=3600, max_bytes=100 * (ENTRY_BYTES + 1030))
    n = 1000
    ids = np.array([f"{i:04d}" for i in range(n)], dtype=np.object_)
    predictions = ["c" * 1024] * n  # a class name as long as the event schema allows
    join.expect(ids, np.arange(n, dtype=np.float64), np.zeros(n, np.int64), predictions,
                np.zeros(n), [() for _ in range(n)])  # fmt: skip
    assert len(join) == 100  # the oldest made room
    assert join.pending_bytes == 100 * (ENTRY_BYTES + 4 + 1024)
    assert join.evicted == 900
    joined = join.match(["0999", "0001"], [1, 1], [2000.0, 2000.0])
    assert joined.n == 1
    assert join.pending_bytes == 99 * (ENTRY_BYTES + 4 + 1024)
    join.expire(predicted_until=1000 + 3600, labelled_until=0)
    assert len(join) == 0
    assert join.pending_bytes == 0
    # Early labels too: one waits (its prediction was evicted), within its own bytes.
    assert join.early_bytes > 0
    restored = LabelJoin(capacity=10, ttl=3600)
    restored.restore(join.snapshot())
    assert (restored.pending_bytes, restored.early_bytes) == (0, join.early_bytes)


def test_challengers_waiting_for_their_champion_hold_at_most_their_bytes() -> None:
    shadow = Shadow(ShadowSettings(), max_bytes=10 * (WAITING_BYTES + 2 + 1 + 1024))
    for i in range(50):
        shadow.wait(f"{i % 10}{i // 10}", "2", "c" * 1024, 0.5)
    assert len(shadow.waiting) == 10
    assert next(iter(shadow.waiting)) == "04"  # the oldest made room
    shadow.take("94")
    assert shadow.waiting_bytes == 9 * (WAITING_BYTES + 2 + 1 + 1024)
    restored = Shadow(ShadowSettings())
    restored.restore(shadow.snapshot())
    assert restored.waiting_bytes == shadow.waiting_bytes
