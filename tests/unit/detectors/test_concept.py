"""Concept drift: quiet on a daily cycle the reference covers, a fifth of the labels
flipping found at once; the river detectors as options."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from streamwatch.config import ConceptDriftSettings
from streamwatch.detectors import Finding, Severity
from streamwatch.detectors.concept import Residuals, Sequential
from streamwatch.join import Joined
from streamwatch.windows import WindowBounds

HOUR = 3600.0


def size(hour: int) -> int:
    """Labels an hour: 200 at 02:00, 20,000 at 14:00, geometrically in between."""
    return round(200 * math.pow(100, (1 - math.cos(2 * math.pi * (hour - 2) / 24)) / 2))


def hour_of(
    rng: np.random.Generator, index: int, flip: float = 0.0, n: int | None = None
) -> Joined:
    """An hour of a binary classifier's labelled predictions. At night most traffic is
    hard (log-odds N(0, 1.2)), by day most is easy (N(0, 2.6)): the error rate cycles
    between 0.20 and 0.29 through the inputs alone, and the scores (slightly
    miscalibrated, 0.9 z + 0.1) follow them. ``flip``: that share of labels inverted."""
    hour = index % 24
    hard = 0.525 + 0.375 * math.cos(2 * math.pi * (hour - 2) / 24)
    n = size(hour) if n is None else n
    z = rng.normal(0.0, np.where(rng.random(n) < hard, 1.2, 2.6))
    score = 1 / (1 + np.exp(-(0.9 * z + 0.1)))
    label = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    label = np.where(rng.random(n) < flip, 1 - label, label)
    return Joined(
        np.full(n, index, dtype=np.int64),
        (score > 0.5).astype(np.int64).astype(object),
        np.round(score, 4),
        label.astype(object),
        np.zeros(n),
    )


def bounds(index: int) -> WindowBounds:
    return WindowBounds(index, index * HOUR, (index + 1) * HOUR)


def residuals(part: Joined, regression: bool = False) -> Residuals:
    state = Residuals(ConceptDriftSettings())
    state.update(part, regression)
    return state


def one(findings: list[Finding]) -> Finding | None:
    """The window's concept drift finding; None where it gives no verdict."""
    assert len(findings) <= 1
    return findings[0] if findings else None


def reference_day(rng: np.random.Generator) -> Residuals:
    reference = Residuals(ConceptDriftSettings())
    for index in range(24):
        reference.merge(residuals(hour_of(rng, index)))
    return reference


def test_the_stream_cycles_its_error_rate_and_its_window_sizes() -> None:
    rng = np.random.default_rng(0)
    hours = [hour_of(rng, index, n=50_000) for index in range(24)]
    rates = [float(np.mean(h.prediction != h.label)) for h in hours]
    assert 0.19 < min(rates) < 0.21
    assert 0.28 < max(rates) < 0.30
    assert min(map(size, range(24))) == 200
    assert max(map(size, range(24))) == 20_000


def test_a_daily_cycle_the_reference_covers_gives_no_breach_in_168_windows() -> None:
    rng = np.random.default_rng(1)
    reference = reference_day(rng)
    findings = [
        one(residuals(hour_of(rng, index)).evaluate("m", bounds(index), reference))
        for index in range(24, 24 * 8)
    ]
    assert all(f is not None and f.severity is Severity.OK for f in findings)
    z = [f.value / f.details["se"] for f in findings if f is not None]
    assert 0.7 < float(np.std(z)) < 1.2  # the test's variance is about right
    assert abs(float(np.mean(z))) < 0.5


def test_adwin_on_the_same_stream_alarms_on_the_cycle() -> None:
    # Why the river detectors are not the default: they read the cycle as changes.
    rng = np.random.default_rng(1)
    adwin = Sequential(ConceptDriftSettings(detector="adwin"))
    alarmed = 0
    for index in range(24 * 3):
        adwin.update(hour_of(rng, index), regression=False)
        alarmed += adwin.evaluate("m", bounds(index))[0].severity is not Severity.OK
    assert alarmed >= 3  # 6 of these 72 windows; 21 of 192 on a longer run


@pytest.mark.parametrize("seed", range(3))
def test_a_fifth_of_labels_flipping_is_found_in_the_first_window_of_600_labels(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    reference = reference_day(rng)
    for hour in range(24):
        if size(hour) < 600:
            continue
        index = 24 + hour
        finding = one(
            residuals(hour_of(rng, index, flip=0.2)).evaluate("m", bounds(index), reference)
        )
        assert finding is not None
        assert finding.severity is not Severity.OK, hour
        assert 0.07 < finding.value < 0.14


def test_at_night_a_fifth_of_labels_flipping_is_found_within_three_windows() -> None:
    # 200 to 400 labels an hour: an excess of 0.085 is about three standard errors.
    rng = np.random.default_rng(4)
    reference = reference_day(rng)
    delays = []
    for start in (23, 0, 1, 2, 3, 4, 5):
        for index in range(24 + start, 24 + start + 6):
            found = one(
                residuals(hour_of(rng, index, flip=0.2)).evaluate("m", bounds(index), reference)
            )
            if found is not None and found.severity is not Severity.OK:
                delays.append(index - 24 - start)
                break
    assert len(delays) == 7
    assert max(delays) <= 2
    assert delays.count(0) >= 3


def test_a_large_excess_is_critical_and_says_what_was_expected() -> None:
    rng = np.random.default_rng(5)
    reference = reference_day(rng)
    finding = one(residuals(hour_of(rng, 38, flip=0.4)).evaluate("m", bounds(38), reference))
    assert finding is not None
    assert finding.severity is Severity.CRITICAL
    assert finding.statistic == "excess_error_rate"
    assert finding.subject == "errors"
    assert finding.details["observed"] - finding.details["expected"] == pytest.approx(finding.value)
    assert "the reference's error rates for the same predictions give" in finding.explanation


def test_few_labels_give_no_verdict() -> None:
    rng = np.random.default_rng(6)
    reference = reference_day(rng)
    assert one(residuals(hour_of(rng, 30, n=99)).evaluate("m", bounds(30), reference)) is None


def test_classes_the_reference_never_predicted_are_read_against_the_whole_reference() -> None:
    rng = np.random.default_rng(7)
    reference = reference_day(rng)
    whole = sum(c[1] for c in reference.cells.values()) / reference.n
    part = hour_of(rng, 30, n=2000)
    part.prediction[:] = "2"  # a class the reference never predicted: always wrong
    finding = one(residuals(part).evaluate("m", bounds(30), reference))
    assert finding is not None
    assert finding.severity is Severity.CRITICAL
    assert finding.details["expected"] == pytest.approx(whole)
    assert finding.details["observed"] == 1.0


def test_a_classifier_without_scores_is_read_by_predicted_class() -> None:
    # Three classes, "c" twice as hard as the others; by night most traffic is "c".
    rng = np.random.default_rng(11)

    def hour(index: int, flip: float = 0.0) -> Joined:
        n = size(index % 24)
        night = (1 + math.cos(2 * math.pi * (index % 24 - 2) / 24)) / 2
        predicted = rng.choice(
            np.array(["a", "b", "c"]), n, p=[0.4 - 0.3 * night / 2] * 2 + [0.2 + 0.3 * night]
        )
        wrong = rng.random(n) < np.where(predicted == "c", 0.3, 0.15) + flip
        label = np.where(wrong, np.where(predicted == "a", "b", "a"), predicted)
        return Joined(
            np.full(n, index, dtype=np.int64),
            predicted.astype(object),
            np.full(n, np.nan),
            label.astype(object),
            np.zeros(n),
        )

    reference = Residuals(ConceptDriftSettings())
    for index in range(24):
        reference.merge(residuals(hour(index)))
    assert {f for _, f in reference.cells} == {-1}
    quiet = [one(residuals(hour(i)).evaluate("m", bounds(i), reference)) for i in range(24, 24 * 4)]
    assert all(f is not None and f.severity is Severity.OK for f in quiet)
    worse = one(residuals(hour(108, flip=0.1)).evaluate("m", bounds(108), reference))
    assert worse is not None
    assert worse.severity is not Severity.OK


def regression_hour(rng: np.random.Generator, index: int, inflate: float = 1.0) -> Joined:
    """A regressor whose errors grow with the predicted value, which cycles daily."""
    n = size(index % 24)
    level = 20 + 15 * math.cos(2 * math.pi * (index % 24) / 24)
    yhat = rng.gamma(4.0, level / 4.0, n)
    y = yhat + rng.normal(0.0, 0.1 * yhat * inflate)
    return Joined(
        np.full(n, index, dtype=np.int64),
        yhat.astype(object),
        np.full(n, np.nan),
        y.astype(object),
        np.zeros(n),
    )


def test_a_regressor_errors_cycling_with_its_predictions_is_no_drift() -> None:
    rng = np.random.default_rng(8)
    reference = Residuals(ConceptDriftSettings())
    for index in range(24):
        reference.merge(residuals(regression_hour(rng, index), regression=True))
    quiet = [
        one(
            residuals(regression_hour(rng, index), regression=True).evaluate(
                "m", bounds(index), reference
            )
        )
        for index in range(24, 24 * 4)
    ]
    assert all(f is not None and f.severity is Severity.OK for f in quiet)
    worse = residuals(regression_hour(rng, 100, inflate=1.3), regression=True)
    finding = one(worse.evaluate("m", bounds(100), reference))
    assert finding is not None
    assert finding.statistic == "excess_abs_error"
    assert finding.severity is Severity.CRITICAL  # 30% more error than expected
    assert finding.value == pytest.approx(0.3, abs=0.05)


def test_merge_equals_the_whole_and_the_snapshot_is_plain_data() -> None:
    rng = np.random.default_rng(9)
    whole = hour_of(rng, 12, n=3000)
    merged = Residuals(ConceptDriftSettings())
    for lo, hi in ((0, 700), (700, 701), (701, 3000)):
        merged.merge(residuals(whole.take(np.arange(lo, hi))))
    assert merged.snapshot() == residuals(whole).snapshot()
    encoded = msgspec.msgpack.encode(merged.snapshot())
    assert msgspec.msgpack.decode(encoded) == merged.snapshot()  # no pickle, no numpy
    restored = Residuals(ConceptDriftSettings())
    restored.restore(msgspec.msgpack.decode(encoded))
    assert restored.snapshot() == merged.snapshot()


def test_finding_values_are_plain_python_numbers() -> None:
    rng = np.random.default_rng(10)
    reference = reference_day(rng)
    finding = one(residuals(hour_of(rng, 30, flip=0.2)).evaluate("m", bounds(30), reference))
    assert finding is not None
    assert type(finding.value) is float
    assert type(finding.threshold) is float
    assert {type(v) for v in finding.details.values()} <= {float, int}
    assert type(finding.n_current) is int
    assert type(finding.n_reference) is int


# -- the river detectors, as options ------------------------------------------------


def steady(rng: np.random.Generator, n: int, error_rate: float, window: int) -> Joined:
    label = rng.integers(0, 2, n)
    wrong = rng.random(n) < error_rate
    prediction = np.where(wrong, 1 - label, label).astype(str).astype(object)
    return Joined(
        np.full(n, window, dtype=np.int64),
        prediction,
        np.full(n, np.nan),
        label.astype(object),
        np.zeros(n),
    )


def test_adwin_is_quiet_on_a_steady_error_rate_over_200_windows() -> None:
    rng = np.random.default_rng(1)
    detector = Sequential(ConceptDriftSettings(detector="adwin"))
    verdicts = []
    for index in range(200):
        detector.update(steady(rng, 500, 0.2, index), regression=False)
        verdicts.append(detector.evaluate("m", bounds(index))[0].severity)
    assert set(verdicts) == {Severity.OK}


def test_adwin_finds_an_error_rate_from_20_to_35_percent_in_the_window_it_starts() -> None:
    for seed in range(10):
        detector = Sequential(ConceptDriftSettings(detector="adwin"))
        rng = np.random.default_rng(seed)
        for index in range(20):
            detector.update(steady(rng, 500, 0.35 if index >= 10 else 0.2, index), False)
        found = [
            i
            for i in range(20)
            if detector.evaluate("m", bounds(i))[0].severity is Severity.WARNING
        ]
        assert found[0] == 10


def test_a_river_snapshot_restores_the_detector() -> None:
    rng = np.random.default_rng(3)
    settings = ConceptDriftSettings(detector="adwin")
    detector = Sequential(settings)
    detector.update(steady(rng, 2000, 0.2, 0), regression=False)
    restored = Sequential(settings)
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(detector.snapshot())))
    jump = steady(rng, 1000, 0.5, 1)
    detector.update(jump, regression=False)
    restored.update(jump, regression=False)
    assert restored.changes == detector.changes
    assert detector.changes  # the jump was found by both


def test_the_default_is_no_river_detector() -> None:
    with pytest.raises(ValueError, match="not a river change detector"):
        Sequential(ConceptDriftSettings())
