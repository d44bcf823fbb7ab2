"""Multivariate out-of-distribution share: exact distances, quiet when steady, broken
correlations found though every feature alone looks the same."""

from __future__ import annotations

import msgspec
import numpy as np
from scipy.spatial.distance import mahalanobis

from streamwatch.batch import Batch, Columns
from streamwatch.config import OutOfDistributionSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.ood import Mahalanobis, OutOfDistribution
from streamwatch.windows import WindowBounds

BOUNDS = WindowBounds(1, 0.0, 60.0)
SETTINGS = OutOfDistributionSettings()
MIX = np.array(  # six features, three of them strongly correlated
    [
        [1.0, 0.9, 0.8, 0.0, 0.0, 0.0],
        [0.0, 0.4, 0.3, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.5, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0, 0.2, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 3.0],
    ]
)


def features(rng: np.random.Generator, n: int, broken: float = 0.0) -> Columns:
    """Correlated features; in a share ``broken`` of events the first feature's sign is
    flipped, which leaves every feature's own distribution as it was."""
    x = rng.standard_normal((n, 6)) @ MIX
    flip = rng.random(n) < broken
    x[flip, 0] = -x[flip, 0]
    return Columns({f"f{j}": x[:, j].copy() for j in range(6)})


def window(fit: Mahalanobis, columns: Columns) -> OutOfDistribution:
    state = OutOfDistribution(SETTINGS, fit)
    state.update(Batch(np.zeros(len(columns.numeric["f0"])), columns, Columns()))
    return state


def setup(seed: int) -> tuple[np.random.Generator, Mahalanobis, OutOfDistribution]:
    rng = np.random.default_rng(seed)
    fit = Mahalanobis(SETTINGS)
    fit.fit(features(rng, 2048))
    return rng, fit, window(fit, features(rng, 10_000))


def severities(
    rng: np.random.Generator,
    fit: Mahalanobis,
    reference: OutOfDistribution,
    windows: int,
    broken: float,
) -> list[Severity]:
    out = []
    for _ in range(windows):
        (finding,) = window(fit, features(rng, 2000, broken)).evaluate("m", BOUNDS, reference)
        out.append(finding.severity)
    return out


def test_distances_are_scipys_mahalanobis() -> None:
    rng = np.random.default_rng(0)
    sample = features(rng, 1000)
    fit = Mahalanobis(SETTINGS)
    fit.fit(sample)
    x = np.column_stack([sample.numeric[k] for k in fit.names])
    inverse = np.linalg.inv(np.cov(x, rowvar=False))
    mean = x.mean(axis=0)
    expected = [mahalanobis(row, mean, inverse) ** 2 for row in x[:50]]
    assert np.allclose(fit.distances(sample)[:50], expected, rtol=1e-9)
    assert np.mean(fit.distances(sample) > fit.threshold) == 0.01


def test_steady_inputs_never_alarm_over_200_windows() -> None:
    rng, fit, reference = setup(1)
    assert severities(rng, fit, reference, 200, 0.0).count(Severity.OK) == 200


def test_a_broken_correlation_in_10_percent_of_events_is_found_in_every_window() -> None:
    # Each feature alone keeps its distribution: only the joint view can see this. About
    # 46% of the flipped events lie beyond the threshold: a rise of 4.6 (14) points.
    rng, fit, reference = setup(2)
    assert set(severities(rng, fit, reference, 20, 0.1)) == {Severity.WARNING}
    assert set(severities(rng, fit, reference, 20, 0.3)) == {Severity.CRITICAL}


def test_missing_values_sit_at_the_mean_and_infinities_are_outside() -> None:
    rng, fit, _ = setup(3)
    columns = features(rng, 4)
    columns.numeric["f0"][0] = np.nan
    columns.numeric["f1"][1] = np.inf
    for name in columns.numeric:
        columns.numeric[name][2] = np.nan
    del columns.numeric["f5"]  # a feature gone: at the mean for every event
    d2 = fit.distances(columns)
    assert np.isfinite(d2[0])
    assert d2[1] == np.inf
    assert np.isnan(d2[2])  # nothing to place it by: not counted
    state = window(fit, columns)
    assert (state.n, state.outside) == (
        3,
        1 + int(d2[0] > fit.threshold) + int(d2[3] > fit.threshold),
    )


def test_constant_and_collinear_features_do_not_break_the_fit() -> None:
    rng = np.random.default_rng(4)
    columns = features(rng, 2000)
    columns.numeric["constant"] = np.full(2000, 7.0)
    columns.numeric["copy"] = 2 * columns.numeric["f0"] + 1  # exactly collinear
    fit = Mahalanobis(SETTINGS)
    fit.fit(columns)
    assert "constant" not in fit.names
    assert "copy" in fit.names
    assert fit.whiten.shape == (7, 6)  # the collinear axis is dropped, not inverted
    assert np.all(np.isfinite(fit.distances(columns)))
    moved = features(rng, 1)
    moved.numeric["constant"] = np.array([7.0])
    moved.numeric["copy"] = 2 * moved.numeric["f0"] + 1.5  # off the line: not measured
    assert np.isfinite(fit.distances(moved)).all()


def test_too_small_a_sample_or_one_feature_leaves_it_unfitted_and_silent() -> None:
    rng = np.random.default_rng(5)
    few = Mahalanobis(SETTINGS)
    few.fit(features(rng, 100))
    one = Mahalanobis(SETTINGS)
    one.fit(Columns({"x": rng.normal(size=5000)}))
    assert not few.fitted
    assert not one.fitted
    restored = Mahalanobis(SETTINGS)
    restored.restore(msgspec.json.decode(msgspec.json.encode(few.snapshot())))
    assert not restored.fitted  # an unfitted model survives a checkpoint too
    state = window(few, features(rng, 1000))
    assert state.n == 0
    assert state.evaluate("m", BOUNDS, state) == []


def test_the_fit_round_trips_through_json() -> None:
    rng, fit, _ = setup(6)
    restored = Mahalanobis(SETTINGS)
    restored.restore(msgspec.json.decode(msgspec.json.encode(fit.snapshot())))
    sample = features(rng, 500)
    assert np.array_equal(restored.distances(sample), fit.distances(sample))
    assert restored.threshold == fit.threshold
