"""What each window is compared with (reference.py): a pinned file of events read per
model, or the first closed windows pooled until they hold enough events and, with a
season, cover a whole one, pooled by phase too."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import pytest

from streamwatch.config import ReferenceSettings, Settings
from streamwatch.errors import ConfigError
from streamwatch.pipeline.reference import ReferencePool, load_reference
from streamwatch.windows import WindowBounds
from tests.factories import event

HOUR = 3600.0
DAY = 24 * HOUR


class Counted:
    """The smallest pooled state: how many events it holds."""

    def __init__(self, n: int = 0) -> None:
        self._n = n

    @property
    def n(self) -> int:
        return self._n

    def merge(self, other: Self) -> None:
        self._n += other.n

    def snapshot(self) -> int:
        return self._n

    def restore(self, state: int) -> None:
        self._n = state


def hour(k: int) -> WindowBounds:
    return WindowBounds(k, k * HOUR, (k + 1) * HOUR)


def test_a_reference_file_is_read_per_model_skipping_labels_and_bad_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reference.jsonl"
    lines = [
        event("a1", "a", features={"x": 1.0}),
        event("b1", "b", features={"x": 5.0}),
        b"{not json",
        event("a2", "a", features={"x": 2.0}),
        event("a1", "a", label=1),  # a label: not part of the reference
        event("a3", "a", features={"x": 3.0}),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    pinned = load_reference(path, Settings())
    assert set(pinned) == {"a", "b"}
    assert pinned["a"].batch.n == 3
    assert pinned["a"].batch.features.numeric["x"].tolist() == [1.0, 2.0, 3.0]
    assert pinned["b"].batch.features.numeric["x"].tolist() == [5.0]


def test_a_reference_file_without_predictions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_bytes(event("a1", "a", label=1) + b"\n")
    with pytest.raises(ConfigError, match="holds no prediction events"):
        load_reference(path, Settings())


def test_windows_pool_until_the_reference_holds_min_events() -> None:
    pool = ReferencePool(ReferenceSettings(min_events=250), Counted)
    assert [pool.add(hour(k), Counted(100)) for k in range(3)] == [True, True, True]
    assert not pool.complete
    assert pool.add(hour(3), Counted(100)) is False  # 300 pooled: compared from now on
    assert pool.complete
    assert pool.of(hour(3)).n == 300
    assert (pool.start, pool.end) == (0.0, 3 * HOUR)


def test_with_a_season_the_reference_covers_a_whole_one_and_each_phase_is_its_own() -> None:
    pool = ReferencePool(ReferenceSettings(min_events=10, season=DAY, phases=24), Counted)
    night = 10  # events an hour at night, 100 by day
    for k in range(24):
        assert pool.add(hour(k), Counted(night if k < 6 else 100))
    assert not pool.complete  # had it held min_events after an hour, a day is still due
    assert pool.add(hour(24), Counted(100)) is False
    assert pool.of(hour(24 + 2)).n == night  # 2 a.m. the next day: against 2 a.m.
    assert pool.of(hour(24 + 12)).n == 100
    assert pool.state is not None
    assert pool.state.n == 6 * night + 18 * 100
    assert pool.phases_of(np.array([0.0, 2.5 * HOUR, DAY + 23.5 * HOUR])).tolist() == [0, 2, 23]


def test_a_phase_without_events_is_compared_with_the_whole_reference() -> None:
    pool = ReferencePool(ReferenceSettings(min_events=10, season=DAY, phases=24), Counted)
    for k in range(24):
        pool.add(hour(k), Counted(0 if k == 5 else 50))
    pool.add(hour(24), Counted(50))
    assert pool.of(hour(24 + 5)).n == 23 * 50


def test_a_pinned_reference_is_complete_at_once() -> None:
    pool = ReferencePool(ReferenceSettings(min_events=1000), Counted)
    pool.pin(Counted(40), {})
    assert pool.complete
    assert pool.add(hour(0), Counted(100)) is False
    assert pool.of(hour(0)).n == 40


def test_a_pool_resumes_from_its_snapshot_where_it_was() -> None:
    settings = ReferenceSettings(min_events=10, season=DAY, phases=4)
    pool = ReferencePool(settings, Counted)
    for k in range(7):
        pool.add(hour(k), Counted(k + 1))
    resumed = ReferencePool(settings, Counted)
    resumed.restore(pool.snapshot())
    assert resumed.snapshot() == pool.snapshot()
    for k in range(7, 25):  # both go on to complete the same way
        assert resumed.add(hour(k), Counted(3)) == pool.add(hour(k), Counted(3))
    assert resumed.complete
    # 2 a.m.: against the first quarter of the day, hours 0 to 5 (pooled before the snapshot).
    assert resumed.of(hour(26)).n == pool.of(hour(26)).n == 1 + 2 + 3 + 4 + 5 + 6
