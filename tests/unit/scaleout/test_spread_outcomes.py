"""A spread model's labelled outcomes in a partition: the joined labels kept for the
owner's sequential detectors, and a window's share as published."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from streamwatch.config import ConceptDriftSettings, DetectorSettings
from streamwatch.detectors.base import LabelledBatch
from streamwatch.detectors.coverage import LabelCoverage
from streamwatch.errors import StateError
from streamwatch.join import Joined
from streamwatch.pipeline.labelled import Labelled
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.pipeline.reference import load_reference
from streamwatch.scaleout.spread_outcomes import (
    Errors,
    Share,
    from_rows,
    part_detectors,
    rows,
)
from tests.unit.scaleout.test_spread import settings, write_reference


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return write_reference(tmp_path)


def joined(windows: list[int], first: int = 0, probabilities: bool = False) -> Joined:
    """Labels of ``windows`` (a class each), told apart by their delays from ``first``."""
    n = len(windows)
    predicted = np.empty(n, dtype=np.object_)
    predicted[:] = ["1" if i % 2 else "0" for i in range(n)]
    actual = np.empty(n, dtype=np.object_)
    actual[:] = [i % 3 for i in range(n)]
    return Joined(
        np.array(windows, dtype=np.int64),
        predicted,
        np.linspace(0.1, 0.9, n),
        actual,
        np.arange(first, first + n, dtype=np.float64),
        [("web",) if i % 2 else (None,) for i in range(n)],
        {"probability[1]": np.linspace(0.2, 0.8, n)} if probabilities else {},
    )


def test_joined_labels_round_trip_as_data_chunk_after_chunk() -> None:
    first, second = joined([3, 3]), joined([3, 4, 4], first=2, probabilities=True)
    data = msgspec.msgpack.decode(msgspec.msgpack.encode(rows([first, second])))
    back = from_rows(data)
    assert back.window.tolist() == [3, 3, 3, 4, 4]
    assert back.prediction.tolist() == ["0", "1", "0", "1", "0"]
    assert back.label.tolist() == [0, 1, 0, 1, 2]
    assert back.delay.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert back.score.tolist() == [*first.score.tolist(), *second.score.tolist()]
    assert back.slices == [(None,), ("web",), (None,), ("web",), (None,)]
    # A column the first chunk had not: NaN in its rows.
    assert np.isnan(back.probabilities["probability[1]"][:2]).all()
    assert back.probabilities["probability[1]"][2:].tolist() == [0.2, 0.5, 0.8]


def test_errors_keep_each_windows_labels_in_arrival_order_and_leave_late_ones_out() -> None:
    errors = Errors()
    errors.observe(LabelledBatch(joined([3, 4, 3]), regression=False))
    errors.observe(LabelledBatch(joined([3, 4], first=3), regression=False))
    assert errors.take(3).delay.tolist() == [0.0, 2.0, 3.0]
    errors.observe(LabelledBatch(joined([3, 5], first=5), regression=False))  # 3 is late
    restored = Errors()
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(errors.snapshot())))
    for kept in (errors, restored):
        assert kept.taken_through == 3
        assert sorted(kept.windows) == [4, 5]
        assert kept.take(4).delay.tolist() == [1.0, 4.0]
        assert kept.take(5).delay.tolist() == [6.0]
        assert kept.take(6).n == 0  # no labels joined in it
    assert errors.evaluate("s", None) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(("detector", "kept"), [("reference", None), ("adwin", "spread_errors")])
def test_a_partition_keeps_errors_in_the_place_of_the_sequential_detectors(
    tmp_path: Path, reference: Path, detector: str, kept: str | None
) -> None:
    concept = ConceptDriftSettings(detector=detector)
    s = settings(tmp_path, "e", reference).model_copy(
        update={"detectors": DetectorSettings(concept_drift=concept)}
    )
    judge = ModelMonitor("s", s, load_reference(reference, s)["s"])
    detectors = part_detectors(judge)
    assert [e.name for e in detectors.of_kind("sequential")] == ([kept] if kept else [])
    assert [e.name for e in detectors.of_kind("outcome")] == [
        e.name for e in judge.detectors.of_kind("outcome")
    ]


def test_a_share_round_trips_and_an_unreadable_one_is_a_state_error() -> None:
    settings = DetectorSettings()
    state = Labelled(settings)
    labels = LabelledBatch(joined([3, 3, 3, 3]), False, ["channel"], {})
    state.observe(labels)
    coverage = LabelCoverage()
    coverage.observe(labels)
    coverage.predictions = 10
    share = Share(state, coverage, ["channel"], joined([3, 3, 3, 3]))
    back = Share.unpack(share.pack(), lambda: Labelled(settings))
    assert back.state.snapshot() == state.snapshot()
    assert back.coverage.snapshot() == [10, 4, 6.0]
    assert back.dimensions == ["channel"]
    assert back.errors is not None
    assert back.errors.delay.tolist() == [0.0, 1.0, 2.0, 3.0]
    without = Share.unpack(Share(state, coverage, []).pack(), lambda: Labelled(settings))
    assert without.errors is None
    with pytest.raises(StateError, match="labelled outcomes are unreadable"):
        Share.unpack(b"junk", lambda: Labelled(settings))
