"""Estimated performance through a model's monitor: events in, windows closed, labels
joined later; the estimate made at each window's close against the accuracy realized
when its labels came.

The population: a binary class y with prior pi, one informative feature x | y ~ N(±1,
1) and one noise feature. The model's score is overconfident (its logit is 1.6 times
the true one at pi = 20%), so the estimate holds only through calibration.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from streamwatch.batch import Schema
from streamwatch.config import (
    DetectorSettings,
    LabelSettings,
    LabelShiftSettings,
    ReferenceSettings,
    Settings,
    WindowSettings,
)
from streamwatch.detectors import Severity
from streamwatch.events import Event
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.pipeline.reference import Pinned

HOUR_MS = 3_600_000
PER_WINDOW = 5_000
BASE_PRIOR = 0.2
REFERENCE_WINDOWS = 2  # 10,000 labelled events calibrate


def _true_logit(x: np.ndarray, prior: float) -> np.ndarray:
    """log p(y=1|x) / p(y=0|x) when x | y ~ N(±1, 1)."""
    logit: np.ndarray = math.log(prior / (1 - prior)) + 2 * x
    return logit


@dataclass
class Stream:
    """Windows of events drawn by class (label shift keeps p(x|y)) or by feature
    (covariate shift keeps p(y|x))."""

    rng: np.random.Generator

    def by_class(self, prior: float) -> tuple[np.ndarray, np.ndarray]:
        y = (self.rng.random(PER_WINDOW) < prior).astype(int)
        return self.rng.normal(np.where(y == 1, 1.0, -1.0), 1.0), y

    def moved(self, shift: float) -> tuple[np.ndarray, np.ndarray]:
        """The reference's inputs moved by ``shift``, labelled by the same p(y|x)."""
        return self._labelled(self.by_class(BASE_PRIOR)[0] + shift)

    def around(self, mean: float, sd: float) -> tuple[np.ndarray, np.ndarray]:
        """Inputs gathered around ``mean``, labelled by the same p(y|x)."""
        return self._labelled(self.rng.normal(mean, sd, PER_WINDOW))

    def _labelled(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = 1 / (1 + np.exp(-_true_logit(x, BASE_PRIOR)))
        return x, (self.rng.random(PER_WINDOW) < p).astype(int)


def events(
    hour: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[list[Event], list[Event]]:
    """One hour's predictions, and their labels a minute after each."""
    stamps = np.sort(rng.uniform(hour * HOUR_MS, (hour + 1) * HOUR_MS - 60_000, len(x)))
    score = 1 / (1 + np.exp(-1.6 * _true_logit(x, BASE_PRIOR)))
    noise = rng.normal(0, 1, len(x))
    predictions = [
        Event(
            f"{hour}-{i}",
            "m",
            int(t),
            features={"x": float(v), "noise": float(n)},
            prediction="1" if s >= 0.5 else "0",
            score=float(s),
        )
        for i, (t, v, n, s) in enumerate(zip(stamps, x, noise, score, strict=True))
    ]
    labels = [
        Event(f"{hour}-{i}", "m", int(t) + 60_000, label=str(label))
        for i, (t, label) in enumerate(zip(stamps, y, strict=True))
    ]
    return predictions, labels


def run(
    windows: Iterator[tuple[np.ndarray, np.ndarray]], estimate_shift: bool = False
) -> dict[int, dict[str, float]]:
    """Per evaluated window: the estimated accuracy (and its interval and severity) and
    the realized accuracy."""
    settings = Settings(
        window=WindowSettings(size="1h", allowed_lateness=60.0),
        reference=ReferenceSettings(min_events=REFERENCE_WINDOWS * PER_WINDOW),
        labels=LabelSettings(horizon=120.0),
        detectors=DetectorSettings(label_shift=LabelShiftSettings(estimate=estimate_shift)),
    )
    monitor = ModelMonitor("m", settings)
    rng = np.random.default_rng(7)
    closed = []
    for hour, (x, y) in enumerate(windows):
        closed += monitor.process(*events(hour, x, y, rng)).closed
    closed += monitor.flush().closed
    found: dict[int, dict[str, float]] = {}
    for window in closed:
        for f in window.findings:
            row = found.setdefault(window.bounds.index, {})
            if f.detector == "estimated_performance" and f.subject == "accuracy":
                row["estimated"] = f.details["estimated"]
                row["low"], row["high"] = f.details["low"], f.details["high"]
                row["alert"] = float(f.severity is not Severity.OK)
                row["corrected"] = f.details["corrected"]
            if f.detector == "performance" and f.subject == "accuracy":
                row["realized"] = f.details["current"]
    return {i: row for i, row in found.items() if "estimated" in row and "realized" in row}


def reference_then(
    rng: Stream, later: Iterator[tuple[np.ndarray, np.ndarray]]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for _ in range(REFERENCE_WINDOWS):
        yield rng.by_class(BASE_PRIOR)
    yield from later


def test_without_shift_the_estimate_is_within_002_of_the_realized_accuracy() -> None:
    stream = Stream(np.random.default_rng(1))
    rows = run(reference_then(stream, (stream.by_class(BASE_PRIOR) for _ in range(12))))
    assert len(rows) >= 11
    errors = [abs(r["estimated"] - r["realized"]) for r in rows.values()]
    assert max(errors) <= 0.02, errors
    assert not any(r["alert"] for r in rows.values())
    inside = sum(r["low"] <= r["realized"] <= r["high"] for r in rows.values())
    assert inside >= 0.8 * len(rows)


def test_under_covariate_shift_the_estimate_follows_the_realized_accuracy() -> None:
    stream = Stream(np.random.default_rng(2))
    # The inputs moved by 0.4 sd: accuracy falls, p(y|x) is unchanged.
    rows = run(reference_then(stream, (stream.moved(0.4) for _ in range(8))))
    errors = [abs(r["estimated"] - r["realized"]) for r in rows.values()]
    assert len(rows) >= 7
    assert max(errors) <= 0.02, errors


def test_a_fall_in_estimated_accuracy_alerts_before_any_label() -> None:
    stream = Stream(np.random.default_rng(3))
    near_boundary = (stream.around(0.6, 0.5) for _ in range(3))
    rows = run(reference_then(stream, near_boundary))
    fallen = [r for r in rows.values() if r["estimated"] < 0.8]
    assert len(fallen) == 3
    assert all(r["alert"] for r in fallen)


@pytest.mark.parametrize("corrected", [True, False])
def test_under_label_shift_only_the_corrected_estimate_follows(corrected: bool) -> None:
    stream = Stream(np.random.default_rng(4))
    shifted = (stream.by_class(0.35) for _ in range(8))
    rows = run(reference_then(stream, shifted), estimate_shift=corrected)
    errors = [abs(r["estimated"] - r["realized"]) for r in rows.values()]
    assert len(rows) >= 7
    assert all(r["corrected"] == float(corrected) for r in rows.values())
    if corrected:
        assert max(errors) <= 0.02, errors
    else:
        assert np.mean(errors) > 0.02, errors


def test_a_labelled_reference_file_calibrates_from_the_first_window() -> None:
    """Labels in the pinned reference make the outcome reference at once: the first
    window is estimated at its close, and compared once its own labels come."""
    settings = Settings(
        window=WindowSettings(size="1h", allowed_lateness=60.0),
        reference=ReferenceSettings(min_events=PER_WINDOW),
        labels=LabelSettings(horizon=120.0),
    )
    stream, rng = Stream(np.random.default_rng(5)), np.random.default_rng(6)
    predictions, labels = [], []
    for hour in (-3, -2):
        more, theirs = events(hour, *stream.by_class(BASE_PRIOR), rng)
        predictions += more
        labels += theirs
    schema = Schema.of("m", settings)
    pinned = Pinned(schema, schema.build(predictions), labels)
    monitor = ModelMonitor("m", settings, pinned)
    assert monitor.outcomes.reference is not None
    assert monitor.outcomes.reference.n == 2 * PER_WINDOW
    predictions, _ = events(0, *stream.by_class(BASE_PRIOR), rng)
    closed = monitor.process(predictions).closed + monitor.flush().closed
    (window,) = [w for w in closed if w.role == "evaluated"]
    estimated = {f.subject for f in window.findings if f.detector == "estimated_performance"}
    assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= estimated


def test_too_few_labels_in_the_reference_file_leave_the_outcome_reference_to_pool() -> None:
    settings = Settings(reference=ReferenceSettings(min_events=PER_WINDOW + 1))
    stream, rng = Stream(np.random.default_rng(5)), np.random.default_rng(6)
    predictions, labels = events(-1, *stream.by_class(BASE_PRIOR), rng)
    schema = Schema.of("m", settings)
    monitor = ModelMonitor("m", settings, Pinned(schema, schema.build(predictions), labels))
    assert monitor.outcomes.reference is None
