"""Performance drift: no alarm without change, detection of stated degradations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from streamwatch.config import PerformanceSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.performance import SCORE_BINS, Performance, _auc
from streamwatch.join import Joined
from streamwatch.windows import WindowBounds
from tests.factories import engine_fed, event

BOUNDS = WindowBounds(1, 0.0, 60.0)


def classified(rng: np.random.Generator, n: int, flip: float = 0.0, sharpen: float = 1.0) -> Joined:
    """A calibrated binary classifier; ``flip`` turns that share of labels (concept
    drift), ``sharpen`` makes its scores overconfident (calibration drift)."""
    x = rng.normal(0.0, 1.0, n)
    p = 1 / (1 + np.exp(-1.5 * x))
    label = rng.random(n) < p
    label = np.where(rng.random(n) < flip, ~label, label)
    score = 1 / (1 + np.exp(-1.5 * sharpen * x))
    prediction = np.where(score > 0.5, "1", "0").astype(object)
    return Joined(
        np.zeros(n, dtype=np.int64),
        prediction,
        score,
        label.astype(int).astype(object),
        np.zeros(n),
    )


def regressed(rng: np.random.Generator, n: int, noise: float = 1.0) -> Joined:
    y = rng.normal(20.0, 5.0, n)
    yhat = y + rng.normal(0.0, noise, n)
    return Joined(
        np.zeros(n, dtype=np.int64),
        yhat.astype(object),
        np.full(n, np.nan),
        y.astype(object),
        np.zeros(n),
    )


def state(joined: Joined, regression: bool = False) -> Performance:
    performance = Performance(PerformanceSettings())
    performance.update(joined, regression)
    return performance


def alarms(current: Performance, reference: Performance) -> dict[str, Severity]:
    return {
        f.subject: f.severity
        for f in current.evaluate("m", BOUNDS, reference)
        if f.severity is not Severity.OK
    }


def test_a_steady_classifier_never_alarms_over_200_windows() -> None:
    rng = np.random.default_rng(1)
    reference = state(classified(rng, 2000))
    assert sum(len(alarms(state(classified(rng, 2000)), reference)) for _ in range(200)) == 0


def test_a_steady_regressor_never_alarms_over_200_windows() -> None:
    rng = np.random.default_rng(2)
    reference = state(regressed(rng, 2000), regression=True)
    windows = [alarms(state(regressed(rng, 2000), regression=True), reference) for _ in range(200)]
    assert sum(map(len, windows)) == 0


def test_concept_drift_of_15_percent_flipped_labels_alarms_in_every_window() -> None:
    # Accuracy falls from about 0.75 to about 0.67: more than 10% relative. At 2,000
    # labels a side that is z = 3.8, short of ALPHA = 0.001 in some windows: 5,000.
    rng = np.random.default_rng(3)
    reference = state(classified(rng, 5000))
    for _ in range(20):
        found = alarms(state(classified(rng, 5000, flip=0.15)), reference)
        assert found["accuracy"] is not Severity.OK
        assert {"roc_auc", "log_loss", "brier"} <= found.keys()


def test_overconfident_scores_alarm_on_calibration() -> None:
    rng = np.random.default_rng(4)
    reference = state(classified(rng, 2000))
    for _ in range(20):
        found = alarms(state(classified(rng, 2000, sharpen=3.0)), reference)
        assert {"log_loss", "ece"} <= found.keys()
        assert "accuracy" not in found  # the same decisions: only the scores are off


def test_errors_30_percent_larger_alarm_in_every_window() -> None:
    rng = np.random.default_rng(5)
    reference = state(regressed(rng, 2000), regression=True)
    for _ in range(20):
        found = alarms(state(regressed(rng, 2000, noise=1.3), regression=True), reference)
        assert found["mae"] is Severity.CRITICAL
        assert found["rmse"] is Severity.CRITICAL


def test_too_few_labels_give_no_verdict() -> None:
    rng = np.random.default_rng(6)
    reference = state(classified(rng, 2000))
    assert state(classified(rng, 99, flip=0.5)).evaluate("m", BOUNDS, reference) == []


def test_binned_auc_is_the_mann_whitney_statistic_of_the_binned_scores() -> None:
    rng = np.random.default_rng(7)
    joined = classified(rng, 3000)
    performance = state(joined)
    bins = np.minimum((joined.score * SCORE_BINS).astype(int), SCORE_BINS - 1)
    positive = joined.label.astype(int) == 1
    u = mannwhitneyu(bins[positive], bins[~positive]).statistic
    auc, _ = _auc(performance.score_counts)
    assert auc == pytest.approx(u / (positive.sum() * (~positive).sum()))


def test_merge_of_parts_equals_the_whole() -> None:
    rng = np.random.default_rng(8)
    joined = classified(rng, 1000)
    whole = state(joined)
    merged = Performance(PerformanceSettings())
    for part in np.array_split(np.arange(1000), 4):
        merged.merge(state(joined.take(part)))
    a, b = whole.snapshot(), merged.snapshot()
    assert sorted(a["confusion"]) == sorted(b["confusion"])
    assert a["score_counts"] == b["score_counts"]
    for key, (n, total, squares) in a["sums"].items():
        assert b["sums"][key][0] == n
        assert b["sums"][key][1] == pytest.approx(total)
        assert b["sums"][key][2] == pytest.approx(squares)


def test_absurd_regression_values_do_not_raise() -> None:
    lines = []
    for i in range(3000):
        value = 1e80 if i == 1500 else 20.0 + (i % 7)
        lines.append(
            event(f"e{i}", timestamp=i * 100, prediction=value, label=20.0 if i != 10 else 1e150)
        )
    e = engine_fed(lines)
    assert e.metrics.total("streamwatch_events") == 3000


def test_boolean_labels_and_predictions_are_the_positive_class_one() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    label = rng.random(n) < 0.4
    joined = Joined(
        np.zeros(n, dtype=np.int64),
        label.astype(int).astype(str).astype(object),
        rng.uniform(0, 1, n),
        label.astype(object),
        np.zeros(n),
    )
    performance = Performance(PerformanceSettings())
    performance.update(joined, regression=False)
    assert performance.score_counts[1].sum() == label.sum()  # True counted as positive


def test_ece_does_not_alarm_on_small_steady_windows() -> None:
    rng = np.random.default_rng(3)

    def window(n: int) -> Performance:
        score = rng.uniform(0, 1, n)
        label = (rng.random(n) < score).astype(int)
        joined = Joined(
            np.zeros(n, dtype=np.int64),
            (score > 0.5).astype(int).astype(str).astype(object),
            score,
            label.astype(object),
            np.zeros(n),
        )
        p = Performance(PerformanceSettings())
        p.update(joined, regression=False)
        return p

    reference = window(1000)
    bounds = WindowBounds(1, 0.0, 60.0)
    alarms = sum(
        any(
            f.subject == "ece" and f.severity is not Severity.OK
            for f in window(150).evaluate("m", bounds, reference)
        )
        for _ in range(200)
    )
    assert alarms <= 2
