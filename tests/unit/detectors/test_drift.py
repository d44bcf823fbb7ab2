"""Feature and prediction drift: false alarms under no change, detection of stated changes.

All streams are seeded; the expectations are exact for these seeds.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwatch.batch import Batch, Columns
from streamwatch.config import DriftSettings
from streamwatch.detectors import Finding, Severity
from streamwatch.detectors.drift import FeatureDrift, PredictionDrift
from streamwatch.detectors.histogram import Binning
from streamwatch.windows import WindowBounds

CATEGORIES = np.array(["A", "B", "C", "D", "E", "F"])
BASE = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])


def features(
    rng: np.random.Generator,
    n: int,
    shift: float = 0.0,
    probabilities: np.ndarray = BASE,
    categories: np.ndarray = CATEGORIES,
) -> Batch:
    """Six numeric features of different shapes and three categorical ones.

    ``shift`` moves the mean of ``x0`` by that many standard deviations;
    ``probabilities`` are those of ``c0``.
    """
    numeric = {
        "x0": rng.normal(shift, 1.0, n),
        "x1": rng.normal(100.0, 15.0, n),
        "x2": rng.lognormal(3.0, 0.8, n),
        "x3": rng.exponential(2.0, n),
        "x4": rng.poisson(3.0, n).astype(float),  # discrete
        "x5": rng.uniform(-1.0, 1.0, n),
    }
    categorical = {
        "c0": rng.choice(categories, n, p=probabilities).astype(object),
        "c1": rng.choice(np.array(["web", "app", "pos"]), n, p=[0.5, 0.35, 0.15]).astype(object),
        "c2": rng.choice(np.array(["y", "n"]), n).astype(object),
    }
    return Batch(np.zeros(n), Columns(numeric, categorical), Columns())


def window_findings(
    reference: FeatureDrift, current: Batch, settings: DriftSettings, grid: Binning
) -> list[Finding]:
    detector = FeatureDrift(settings, grid)
    detector.update(current)
    return detector.evaluate("m", WindowBounds(1, 0.0, 60.0), reference)


def reference_of(batch: Batch, settings: DriftSettings) -> tuple[FeatureDrift, Binning]:
    grid = Binning(max_categories=200)
    reference = FeatureDrift(settings, grid)
    reference.update(batch)
    return reference, grid


def alarms(findings: list[Finding]) -> list[str]:
    return [f.subject for f in findings if f.severity is not Severity.OK]


def test_identical_distributions_never_alarm_over_200_windows() -> None:
    rng = np.random.default_rng(1)
    settings = DriftSettings()
    reference, grid = reference_of(features(rng, 2000), settings)
    false_alarms = [
        alarms(window_findings(reference, features(rng, 2000), settings, grid)) for _ in range(200)
    ]
    assert sum(map(len, false_alarms)) == 0


def test_small_windows_alarm_on_noise_at_most_at_the_false_discovery_rate() -> None:
    # 150 events per window: effect sizes are noisy here, significance must hold them back.
    rng = np.random.default_rng(2)
    settings = DriftSettings()
    reference, grid = reference_of(features(rng, 150), settings)
    windows_alarmed = sum(
        bool(alarms(window_findings(reference, features(rng, 150), settings, grid)))
        for _ in range(300)
    )
    assert windows_alarmed <= 3  # alpha = 1% of 300 windows


def test_a_tiny_shift_in_a_million_event_window_does_not_alarm() -> None:
    # 0.005 sd at 10^6 events is highly significant (KS p ~ 1e-6) but trivial in size.
    rng = np.random.default_rng(3)
    settings = DriftSettings()
    ref_x = rng.normal(0, 1, 1_000_000)
    grid = Binning(max_categories=200)
    reference = FeatureDrift(settings, grid)
    reference.update(Batch(np.zeros(len(ref_x)), Columns({"x": ref_x}), Columns()))
    for _ in range(3):
        x = rng.normal(0.005, 1, 1_000_000)
        current = Batch(np.zeros(len(x)), Columns({"x": x}), Columns())
        (finding,) = window_findings(reference, current, settings, grid)
        assert finding.severity is Severity.OK
        assert finding.value < 0.02


def test_a_quarter_sd_mean_shift_at_5000_events_always_alarms() -> None:
    rng = np.random.default_rng(4)
    settings = DriftSettings()
    reference, grid = reference_of(features(rng, 5000), settings)
    for _ in range(50):
        assert alarms(
            window_findings(reference, features(rng, 5000, shift=0.25), settings, grid)
        ) == ["x0"]


@pytest.mark.parametrize(
    ("probabilities", "categories", "tv", "js"),
    [
        # 15 points of mass move from A to C: total variation 0.15, Jensen-Shannon 0.19.
        (np.array([0.15, 0.2, 0.3, 0.15, 0.1, 0.1]), CATEGORIES, 0.15, 0.19),
        # A category never seen in the reference takes 10%: 0.10 and 0.23.
        (np.r_[BASE * 0.9, 0.1], np.r_[CATEGORIES, ["NEW"]], 0.10, 0.23),
    ],
)
def test_categorical_shifts_alarm_in_every_window(
    probabilities: np.ndarray, categories: np.ndarray, tv: float, js: float
) -> None:
    rng = np.random.default_rng(5)
    settings = DriftSettings()
    reference, grid = reference_of(features(rng, 5000), settings)
    for _ in range(20):
        current = features(rng, 5000, probabilities=probabilities, categories=categories)
        findings = window_findings(reference, current, settings, grid)
        assert alarms(findings) == ["c0"]
        (c0,) = [f for f in findings if f.subject == "c0"]
        assert c0.statistic == "total_variation"
        assert c0.value == pytest.approx(tv, abs=0.02)
        assert c0.details["jensen_shannon"] == pytest.approx(js, abs=0.03)


def test_findings_explain_themselves() -> None:
    rng = np.random.default_rng(6)
    settings = DriftSettings()
    reference, grid = reference_of(features(rng, 5000), settings)
    findings = window_findings(reference, features(rng, 5000, shift=1.0), settings, grid)
    (x0,) = [f for f in findings if f.subject == "x0"]
    assert x0.severity is Severity.CRITICAL
    assert x0.statistic == "wasserstein"
    assert x0.threshold == 0.25
    assert (x0.n_reference, x0.n_current) == (5000, 5000)
    assert "feature 'x0' of model 'm': critical drift" in x0.explanation
    assert "(+0.98 sd)" in x0.explanation  # the mean moved by about one sd
    assert "significant (q < 1e-300)" in x0.explanation
    assert x0.details["q_value"] < 1e-10


def test_too_few_events_give_no_verdict() -> None:
    rng = np.random.default_rng(7)
    settings = DriftSettings(min_samples=100)
    reference, grid = reference_of(features(rng, 5000), settings)
    assert window_findings(reference, features(rng, 99, shift=3.0), settings, grid) == []


def test_the_statistic_and_thresholds_are_configurable() -> None:
    rng = np.random.default_rng(8)
    settings = DriftSettings(numeric_statistic="psi", numeric_warning=0.01, numeric_critical=0.02)
    reference, grid = reference_of(features(rng, 5000), settings)
    findings = window_findings(reference, features(rng, 5000, shift=0.25), settings, grid)
    (x0,) = [f for f in findings if f.subject == "x0"]
    assert x0.statistic == "psi"
    assert x0.severity is Severity.CRITICAL  # PSI of a 0.25 sd shift is about 0.06


def test_prediction_drift_watches_the_outputs() -> None:
    rng = np.random.default_rng(9)
    settings = DriftSettings()

    def outputs(n: int, shift: float) -> Batch:
        score = 1 / (1 + np.exp(-rng.normal(-1 + shift, 1, n)))
        label = np.where(score > 0.5, "1", "0").astype(object)
        return Batch(np.zeros(n), Columns(), Columns({"score": score}, {"prediction": label}))

    grid = Binning(max_categories=200)
    reference = PredictionDrift(settings, grid)
    reference.update(outputs(5000, 0.0))
    quiet, moved = PredictionDrift(settings, grid), PredictionDrift(settings, grid)
    quiet.update(outputs(5000, 0.0))
    moved.update(outputs(5000, 0.8))
    bounds = WindowBounds(1, 0.0, 60.0)
    assert alarms(quiet.evaluate("m", bounds, reference)) == []
    assert alarms(moved.evaluate("m", bounds, reference)) == ["score", "prediction"]


def one_feature(values: np.ndarray, name: str = "x") -> Batch:
    return Batch(np.zeros(len(values)), Columns({name: values}), Columns())


def test_a_feature_constant_in_the_reference_is_still_watched() -> None:
    # A feature stuck at 0.0 until a pipeline backfills it: any move must be seen.
    rng = np.random.default_rng(10)
    settings = DriftSettings()
    binning = Binning(max_categories=200)
    reference = FeatureDrift(settings, binning)
    reference.update(one_feature(np.zeros(3000)))
    for moved, expected in [
        (np.zeros(3000), Severity.OK),
        (rng.normal(5.0, 1.0, 3000), Severity.CRITICAL),
        (rng.normal(-5.0, 1.0, 3000), Severity.CRITICAL),
        (np.full(3000, 0.5), Severity.CRITICAL),
    ]:
        (finding,) = window_findings(reference, one_feature(moved), settings, binning)
        assert finding.severity is expected


def test_one_wild_reference_value_does_not_silence_a_feature() -> None:
    rng = np.random.default_rng(11)
    settings = DriftSettings()
    ref = rng.normal(0.0, 1.0, 5000)
    ref[17] = 1e4
    reference, binning = reference_of(one_feature(ref), settings)
    for shift in (0.5, 1.0, 2.0):
        current = one_feature(rng.normal(shift, 1.0, 5000))
        (finding,) = window_findings(reference, current, settings, binning)
        assert finding.severity is Severity.CRITICAL
        assert finding.value == pytest.approx(shift, rel=0.15)


def categorical(rng: np.random.Generator, n: int, cardinality: int, zipf: bool = False) -> Batch:
    if zipf:
        weights = 1.0 / np.arange(1, cardinality + 1)
        p = weights / weights.sum()
    else:
        p = np.full(cardinality, 1.0 / cardinality)
    values = rng.choice(np.array([f"v{i}" for i in range(cardinality)]), n, p=p).astype(object)
    return Batch(np.zeros(n), Columns({}, {"c": values}), Columns())


def test_more_categories_than_tracked_do_not_alarm_on_identical_data() -> None:
    rng = np.random.default_rng(12)
    settings = DriftSettings()  # tracks 200 categories; this feature has 1000
    reference, binning = reference_of(categorical(rng, 5000, 1000), settings)
    for _ in range(50):
        current = categorical(rng, 5000, 1000)
        assert alarms(window_findings(reference, current, settings, binning)) == []


def test_sparse_categories_alarm_at_most_at_the_false_discovery_rate() -> None:
    # 150 Zipf-distributed categories, 150 events per window: most are rare.
    rng = np.random.default_rng(13)
    settings = DriftSettings()
    reference, binning = reference_of(categorical(rng, 1000, 150, zipf=True), settings)
    alarmed = sum(
        bool(
            alarms(
                window_findings(reference, categorical(rng, 150, 150, zipf=True), settings, binning)
            )
        )
        for _ in range(300)
    )
    assert alarmed <= 3  # alpha = 1% of 300 windows


FIVE = np.array(["A", "B", "C", "D", "E"])
FIVE_SHARES = np.array([0.3, 0.25, 0.2, 0.15, 0.1])


def moved(points: float) -> np.ndarray:
    """FIVE_SHARES with ``points`` of mass moved from A to B."""
    shares: np.ndarray = FIVE_SHARES + np.array([-points, points, 0.0, 0.0, 0.0])
    return shares


def one_categorical(
    rng: np.random.Generator, n: int, shares: np.ndarray, categories: np.ndarray = FIVE
) -> Batch:
    values = rng.choice(categories, n, p=shares).astype(object)
    return Batch(np.zeros(n), Columns({}, {"c": values}), Columns())


def test_8_points_moved_between_two_of_five_categories_warn_at_5000_events() -> None:
    # Total variation 0.08: as much mass as a 0.2 sd shift moves, which numeric drift
    # flags. Jensen-Shannon reads 0.08-0.11 here, mostly below its warning of 0.1.
    rng = np.random.default_rng(14)
    settings = DriftSettings()
    reference, binning = reference_of(one_categorical(rng, 5000, FIVE_SHARES), settings)
    for _ in range(50):
        current = one_categorical(rng, 5000, moved(0.08))
        (finding,) = window_findings(reference, current, settings, binning)
        assert finding.severity is not Severity.OK
        assert finding.value == pytest.approx(0.09, abs=0.02)


def test_12_points_moved_are_notified_in_their_first_window() -> None:
    rng = np.random.default_rng(15)
    settings = DriftSettings()
    reference, binning = reference_of(one_categorical(rng, 5000, FIVE_SHARES), settings)
    first, *later = [
        window_findings(reference, one_categorical(rng, 5000, moved(0.12)), settings, binning)
        for _ in range(20)
    ]
    assert [f.severity for f in first] == [Severity.CRITICAL]  # 0.12 moved ≥ 0.1
    assert all(f.severity is not Severity.OK for findings in later for f in findings)
    assert "critical drift: total variation (share of mass moved) 0.1" in first[0].explanation


def test_one_point_moved_at_a_million_events_is_no_drift() -> None:
    # Highly significant at this size, and trivial: the effect size holds it back.
    rng = np.random.default_rng(16)
    settings = DriftSettings()
    reference, binning = reference_of(one_categorical(rng, 1_000_000, FIVE_SHARES), settings)
    for _ in range(3):
        current = one_categorical(rng, 1_000_000, moved(0.01))
        (finding,) = window_findings(reference, current, settings, binning)
        assert finding.severity is Severity.OK
        assert finding.details["q_value"] < 1e-10
        assert finding.value == pytest.approx(0.01, abs=0.003)


@pytest.mark.parametrize("reference_size", [1_000, 20_000])
def test_a_long_tailed_categorical_without_change_breaches_at_the_false_discovery_rate(
    reference_size: int,
) -> None:
    # 300 Zipf values: a 1,000-event reference misses 7% of the mass (categories it
    # never saw), a 20,000-event one overflows the 200 tracked categories. Neither may
    # read as drift: the chi-square test must hold its level, with windows from 200 to
    # 20,000 events.
    rng = np.random.default_rng(17)
    values = np.array([f"v{i}" for i in range(300)])
    weights = np.arange(1, 301) ** -1.3
    shares = weights / weights.sum()
    settings = DriftSettings()
    reference, binning = reference_of(
        one_categorical(rng, reference_size, shares, values), settings
    )
    significant = breaches = 0
    for _ in range(200):
        n = round(float(np.exp(rng.uniform(np.log(200), np.log(20_000)))))
        current = one_categorical(rng, n, shares, values)
        (finding,) = window_findings(reference, current, settings, binning)
        significant += finding.details["q_value"] <= settings.alpha
        breaches += finding.severity is not Severity.OK
    assert significant <= 4  # 1% of 200 windows is 2
    assert breaches <= 2


@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(0, 600), max_size=5))
def test_merge_is_exact_beyond_the_category_limit(seed: int, cuts: list[int]) -> None:
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array([f"c{i}" for i in range(40)]), 600).astype(object)
    batch = Batch(np.zeros(600), Columns({}, {"k": values}), Columns())
    settings = DriftSettings(max_categories=8)

    def counted(parts: list[Batch]) -> dict[str, object]:
        binning = Binning(settings.max_categories)
        total = FeatureDrift(settings, binning)
        for part in parts:
            state = FeatureDrift(settings, binning)
            state.update(part)
            total.merge(state)
        return total.snapshot()

    bounds = sorted({0, 600, *cuts})
    parts = [batch.take(np.arange(lo, hi)) for lo, hi in itertools.pairwise(bounds)]
    assert counted(parts) == counted([batch])


def test_overlong_categories_count_as_missing() -> None:
    values = np.array(["a", "x" * 2000, "b", None], dtype=np.object_)
    detector = FeatureDrift(DriftSettings(), Binning(max_categories=200))
    detector.update(Batch(np.zeros(4), Columns({}, {"k": values}), Columns()))
    assert dict(detector.categorical["k"].counts) == {"a": 1, "b": 1}
    assert detector.categorical["k"].missing == 2
