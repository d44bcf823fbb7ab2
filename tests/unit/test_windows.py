from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwatch.batch import Batch
from streamwatch.windows import LATE, CountWindows, TimeWindows, WindowBounds
from tests.factories import numeric_batch


class Times:
    """A window state that remembers the event times it was given."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def update(self, batch: Batch) -> None:
        self.times += batch.event_time.tolist()

    def snapshot(self) -> dict[str, Any]:
        return {"times": self.times}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.times = list(state["times"])


def late(ids: np.ndarray) -> int:
    return int((ids == LATE).sum())


def batch(*times: float) -> Batch:
    return numeric_batch(np.array(times, dtype=np.float64))


def closed(
    windows: TimeWindows[Times] | CountWindows[Times], final: bool = False
) -> list[tuple[WindowBounds, list[float], int]]:
    return [(b, s.times, n) for b, s, n in windows.pop_closed(final)]


def test_events_go_to_tumbling_windows_by_event_time() -> None:
    windows = TimeWindows(Times, size=60, lateness=0)
    assert late(windows.add(batch(0, 59.9, 60, 119, 121))) == 0
    result = closed(windows)
    assert [(b.start, b.end) for b, _, _ in result] == [(0, 60), (60, 120)]
    assert [times for _, times, _ in result] == [[0, 59.9], [60, 119]]
    assert closed(windows) == []  # [120, 180) waits for the watermark
    assert [b.start for b, _, _ in closed(windows, final=True)] == [120]


def test_out_of_order_events_within_lateness_are_kept() -> None:
    windows = TimeWindows(Times, size=60, lateness=30)
    assert late(windows.add(batch(10, 70, 50, 85))) == 0  # 50 arrives after 70: fine, watermark 55
    assert closed(windows) == []  # watermark 85 - 30 = 55 < 60
    assert (
        late(windows.add(batch(55, 95))) == 0
    )  # 55 still in time: the watermark only now passes 60
    ((bounds, times, n),) = closed(windows)
    assert (bounds.start, sorted(times), n) == (0, [10, 50, 55], 3)


def test_events_behind_the_watermark_are_late_and_dropped() -> None:
    windows = TimeWindows(Times, size=60, lateness=10)
    assert late(windows.add(batch(5, 75, 40, 200))) == 1  # 40 arrives with the watermark at 65
    result = closed(windows)
    assert [(b.start, t) for b, t, _ in result] == [(0, [5]), (60, [75])]
    # The watermark is at 190: [60, 120) and [120, 180) are closed, [180, 240) is open.
    assert late(windows.add(batch(100, 130, 185))) == 2
    assert closed(windows, final=True)[0][1] == [200, 185]


def test_final_close_flushes_every_open_window() -> None:
    windows = TimeWindows(Times, size=60, lateness=600)
    windows.add(batch(1, 61, 121))
    assert closed(windows) == []
    assert [b.index for b, _, _ in closed(windows, final=True)] == [0, 1, 2]
    assert closed(windows, final=True) == []


def test_count_windows_close_when_full() -> None:
    windows = CountWindows(Times, size=3)
    windows.add(batch(5, 1, 9, 7))
    ((bounds, times, n),) = closed(windows)
    assert (bounds.start, bounds.end, times, n) == (1, 9, [5, 1, 9], 3)
    windows.add(batch(2, 3))
    assert closed(windows)[0][1] == [7, 2, 3]


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        TimeWindows(Times, size=0, lateness=0)
    with pytest.raises(ValueError, match="at least one"):
        CountWindows(Times, size=0)


@given(
    times=st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=200),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_result_does_not_depend_on_how_the_stream_is_batched(
    times: list[float], cuts: list[int]
) -> None:
    def run(parts: list[list[float]]) -> tuple[list[tuple[int, list[float]]], int]:
        windows = TimeWindows(Times, size=50, lateness=20)
        late_events = sum(late(windows.add(batch(*p))) for p in parts if p)
        result = closed(windows) + closed(windows, final=True)
        return [(b.index, t) for b, t, _ in result], late_events

    bounds = sorted({min(c, len(times)) for c in cuts} | {0, len(times)})
    parts = [times[a:b] for a, b in itertools.pairwise(bounds)]
    whole = run([times])
    assert run(parts) == whole
    # Every event is either in exactly one window or counted late.
    windowed = sum(len(t) for _, t in whole[0])
    assert windowed + whole[1] == len(times)
