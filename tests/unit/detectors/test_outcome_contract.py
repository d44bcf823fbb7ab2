"""The shared checks for the states built from labelled outcomes: performance, slices,
errors per calibration cell (concept drift), and the composite the outcome reference pools.

Merging states built on parts of a stream equals the state of the whole stream, and a
snapshot survives msgpack (the checkpoint's encoding) unchanged.
"""

from __future__ import annotations

import itertools

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwatch.config import (
    ConceptDriftSettings,
    DetectorSettings,
    PerformanceSettings,
    SliceSettings,
)
from streamwatch.detectors.concept import Residuals
from streamwatch.detectors.performance import Performance
from streamwatch.detectors.slices import Slices
from streamwatch.join import Joined
from streamwatch.pipeline.outcomes import Labelled


def joined(seed: int, n: int, regression: bool) -> Joined:
    rng = np.random.default_rng(seed)
    if regression:
        y = rng.normal(10, 3, n)
        return Joined(
            np.zeros(n, dtype=np.int64),
            (y + rng.normal(0, 1, n)).astype(object),
            np.full(n, np.nan),
            y.astype(object),
            np.zeros(n),
        )
    label = rng.integers(0, 2, n)
    score = rng.uniform(0, 1, n)
    return Joined(
        np.zeros(n, dtype=np.int64),
        (score > 0.5).astype(int).astype(str).astype(object),
        score,
        label.astype(object),
        np.zeros(n),
        [
            (r, g)
            for r, g in zip(
                rng.choice(["EU", "NA"], n).tolist(),
                rng.choice(["f", "m"], n).tolist(),
                strict=True,
            )
        ],
    )


def performance(part: Joined, regression: bool) -> Performance:
    state = Performance(PerformanceSettings())
    state.update(part, regression)
    return state


def slices(part: Joined, vocabulary: dict[str, set[str]]) -> Slices:
    state = Slices(SliceSettings(), positive="1")
    predicted = [str(p) for p in part.prediction.tolist()]
    actual = [str(a) for a in part.label.tolist()]
    state.update(["region", "group"], part.slices, predicted, actual, vocabulary)
    return state


def parts(whole: Joined, cuts: list[int]) -> list[Joined]:
    bounds = sorted({0, whole.n, *(c for c in cuts if c < whole.n)})
    return [whole.take(np.arange(lo, hi)) for lo, hi in itertools.pairwise(bounds)]


@pytest.mark.parametrize("regression", [False, True])
@given(seed=st.integers(0, 500), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_performance_merge_equals_the_whole(regression: bool, seed: int, cuts: list[int]) -> None:
    whole = joined(seed, 400, regression)
    merged = Performance(PerformanceSettings())
    for part in parts(whole, cuts):
        merged.merge(performance(part, regression))
    a, b = performance(whole, regression).snapshot(), merged.snapshot()
    assert sorted(map(tuple, a["confusion"])) == sorted(map(tuple, b["confusion"]))
    assert a["score_counts"] == b["score_counts"]
    for key, (n, total, squares) in a["sums"].items():
        assert b["sums"][key][0] == n
        assert b["sums"][key][1] == pytest.approx(total)
        assert b["sums"][key][2] == pytest.approx(squares)


@given(seed=st.integers(0, 500), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_slices_merge_equals_the_whole(seed: int, cuts: list[int]) -> None:
    whole = joined(seed, 400, regression=False)
    merged = Slices(SliceSettings(), positive="1")
    vocabulary: dict[str, set[str]] = {}
    for part in parts(whole, cuts):
        merged.merge(slices(part, vocabulary))
    expected = slices(whole, {}).counts
    assert {k: v.tolist() for k, v in merged.counts.items()} == {
        k: v.tolist() for k, v in expected.items()
    }


@pytest.mark.parametrize("regression", [False, True])
def test_performance_snapshot_round_trips_through_msgpack(regression: bool) -> None:
    state = performance(joined(1, 300, regression), regression)
    restored = Performance(PerformanceSettings())
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(state.snapshot())))
    assert restored.snapshot() == state.snapshot()


def test_slices_snapshot_round_trips_through_msgpack() -> None:
    state = slices(joined(2, 300, regression=False), {})
    restored = Slices(SliceSettings(), positive="1")
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(state.snapshot())))
    assert {k: v.tolist() for k, v in restored.counts.items()} == {
        k: v.tolist() for k, v in state.counts.items()
    }


def residuals(part: Joined, regression: bool) -> Residuals:
    state = Residuals(ConceptDriftSettings())
    state.update(part, regression)
    return state


@pytest.mark.parametrize("regression", [False, True])
@given(seed=st.integers(0, 500), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_residuals_merge_equals_the_whole(regression: bool, seed: int, cuts: list[int]) -> None:
    whole = joined(seed, 400, regression)
    merged = Residuals(ConceptDriftSettings())
    for part in parts(whole, cuts):
        merged.merge(residuals(part, regression))
    expected = residuals(whole, regression).snapshot()
    got = merged.snapshot()
    assert got["regression"] == expected["regression"]
    assert [row[:3] for row in got["cells"]] == [row[:3] for row in expected["cells"]]
    for a, b in zip(got["cells"], expected["cells"], strict=True):
        assert a[3:] == pytest.approx(b[3:])


@pytest.mark.parametrize("regression", [False, True])
def test_residuals_snapshot_round_trips_through_msgpack(regression: bool) -> None:
    state = residuals(joined(3, 300, regression), regression)
    restored = Residuals(ConceptDriftSettings())
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(state.snapshot())))
    assert restored.snapshot() == state.snapshot()


def labelled(part: Joined) -> Labelled:
    state = Labelled(DetectorSettings())
    state.performance.update(part, regression=False)
    state.errors.update(part, regression=False)
    predicted = [str(p) for p in part.prediction.tolist()]
    actual = [str(a) for a in part.label.tolist()]
    state.slices.update(["region", "group"], part.slices, predicted, actual, {})
    return state


def test_the_pooled_composite_merges_counts_and_round_trips_through_msgpack() -> None:
    a, b = labelled(joined(4, 300, regression=False)), labelled(joined(5, 200, regression=False))
    a.merge(b)
    assert a.n == 500
    restored = Labelled(DetectorSettings())
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(a.snapshot())))
    assert restored.snapshot() == a.snapshot()
