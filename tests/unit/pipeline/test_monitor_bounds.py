"""What one model holds is bounded in bytes: the warm-up sample, its feature names, the
label join and the challengers waiting for their champion."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from streamwatch.config import Settings, ShadowSettings, WindowSettings
from streamwatch.detectors.shadow import WAITING_BYTES, Shadow
from streamwatch.events import Event, decode
from streamwatch.join import ENTRY_BYTES, LabelJoin
from streamwatch.pipeline.monitor import ModelMonitor
from tests.factories import event, origin


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
