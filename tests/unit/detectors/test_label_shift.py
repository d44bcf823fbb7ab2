"""Label shift, observed and estimated (MLLS, and BBSE for a model without
probabilities), on seeded 3-class streams."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from streamwatch.batch import Batch, Columns
from streamwatch.config import DriftSettings, LabelShiftSettings, PerformanceSettings
from streamwatch.detectors import Finding, Severity
from streamwatch.detectors.cells import Cells
from streamwatch.detectors.drift import PredictionDrift
from streamwatch.detectors.histogram import Binning
from streamwatch.detectors.label_shift import EstimatedLabelShift, bbse, estimated, observed
from streamwatch.detectors.performance import LabelledReference, Performance
from streamwatch.join import Joined
from streamwatch.windows import WindowBounds
from tests.unit.detectors.test_priors import POSITIVE, SOURCE, Stream

CLASSES = np.array(["a", "b", "c"])
# p(ŷ | y): a well-conditioned classifier, 90% right, its mistakes spread evenly.
RIGHT = 0.9
CONDITIONAL = np.full((3, 3), (1 - RIGHT) / 2) + np.eye(3) * (RIGHT - (1 - RIGHT) / 2)
REFERENCE_PRIORS = np.array([0.5, 0.3, 0.2])
BOUNDS = WindowBounds(3, 0.0, 60.0)


def draw(rng: np.random.Generator, n: int, priors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(3, n, p=priors)
    yhat = np.array([rng.choice(3, p=CONDITIONAL[:, k]) for k in y])
    return yhat, y


def confusion(yhat: np.ndarray, y: np.ndarray) -> Counter[tuple[str, str]]:
    return Counter(zip(CLASSES[yhat].tolist(), CLASSES[y].tolist(), strict=True))


def predicted(yhat: np.ndarray) -> dict[str, int]:
    return dict(Counter(CLASSES[yhat].tolist()))


def reference(rng: np.random.Generator) -> Counter[tuple[str, str]]:
    return confusion(*draw(rng, 10_000, REFERENCE_PRIORS))


def labelled(confusion: Counter[tuple[str, str]]) -> Performance:
    """A labelled reference of predicted classes only (no probabilities: BBSE)."""
    performance = Performance(PerformanceSettings())
    performance.confusion = confusion
    return performance


def by_bbse(
    confusion: Counter[tuple[str, str]], predicted: dict[str, int], settings: LabelShiftSettings
) -> Finding | None:
    return estimated("m", BOUNDS, labelled(confusion), Cells(), predicted, settings, "1")


def test_bbse_recovers_shifted_priors_within_003_l1() -> None:
    rng = np.random.default_rng(1)
    ref = reference(rng)
    truth = np.array([0.2, 0.3, 0.5])
    covered = 0
    for _ in range(10):
        yhat, _ = draw(rng, 10_000, truth)
        estimate = bbse(ref, predicted(yhat), rng)
        assert estimate is not None
        assert np.abs(np.array(estimate.priors) - truth).sum() < 0.03
        intervals = zip(estimate.low, truth, estimate.high, strict=True)
        covered += sum(lo <= t <= hi for lo, t, hi in intervals)
    assert covered >= 26  # of 30 nominal 95% intervals


def test_bbse_does_not_alarm_without_shift_over_200_windows() -> None:
    rng = np.random.default_rng(2)
    ref = reference(rng)
    settings = LabelShiftSettings()
    findings = [
        by_bbse(ref, predicted(draw(rng, 2000, REFERENCE_PRIORS)[0]), settings) for _ in range(200)
    ]
    assert all(f is not None and f.severity is Severity.OK for f in findings)


def test_bbse_alarms_on_a_shift_of_03_l1_in_every_window() -> None:
    # Priors (0.5, 0.3, 0.2) -> (0.35, 0.3, 0.35): L1 0.3, critical (>= 0.2).
    rng = np.random.default_rng(3)
    ref = reference(rng)
    for _ in range(20):
        yhat, _ = draw(rng, 2000, np.array([0.35, 0.3, 0.35]))
        finding = by_bbse(ref, predicted(yhat), LabelShiftSettings())
        assert finding is not None
        assert finding.severity is Severity.CRITICAL
        assert "BBSE" in finding.explanation
        assert "no probabilities" in finding.explanation  # MLLS asked, cannot run


def test_an_ill_conditioned_classifier_gives_no_estimate_and_says_why() -> None:
    # Classes b and c are indistinguishable to this classifier.
    ref = Counter(
        {("a", "a"): 500, ("b", "b"): 250, ("b", "c"): 250, ("c", "b"): 250, ("c", "c"): 250}
    )
    finding = by_bbse(ref, {"a": 300, "b": 400, "c": 300}, LabelShiftSettings())
    assert finding is not None
    assert finding.severity is Severity.OK
    assert "ill-conditioned" in finding.explanation


def test_observed_labels_alarm_on_shift_and_not_without() -> None:
    rng = np.random.default_rng(4)
    ref = reference(rng)
    settings = LabelShiftSettings()
    quiet = [
        observed("m", BOUNDS, confusion(*draw(rng, 2000, REFERENCE_PRIORS)), ref, settings)
        for _ in range(200)
    ]
    assert all(f is not None and f.severity is Severity.OK for f in quiet)
    moved = observed(
        "m", BOUNDS, confusion(*draw(rng, 2000, np.array([0.2, 0.3, 0.5]))), ref, settings
    )
    assert moved is not None
    assert moved.severity is not Severity.OK


# Through the detector, as the pipeline feeds it: the labelled reference from joined
# labels (Performance), the window from batches of outputs (PredictionDrift).


def both(reference: Performance) -> Callable[[WindowBounds], LabelledReference]:
    """The labelled reference, whole and at any window's phase (no season)."""
    return lambda _: LabelledReference(reference, reference)


def window(stream: Stream, rng: np.random.Generator, priors: np.ndarray, n: int) -> PredictionDrift:
    _, p = stream.draw(rng, n, priors)
    outputs = Columns(stream.outputs(p), {"prediction": stream.classes[p.argmax(axis=1)]})
    drift = PredictionDrift(DriftSettings(), Binning(max_categories=200))
    drift.update(Batch(np.zeros(n), Columns(), outputs))
    return drift


def detect(
    reference: Performance, current: PredictionDrift, settings: LabelShiftSettings, index: int
) -> Finding:
    detector = EstimatedLabelShift(settings, current, both(reference), POSITIVE)
    findings = detector.evaluate("m", WindowBounds(index, 0.0, 60.0), detector)
    assert len(findings) == 1
    return findings[0]


def test_mlls_does_not_alarm_without_shift_over_100_windows() -> None:
    stream = Stream(3, overconfident=True)
    rng = np.random.default_rng(5)
    reference, settings = stream.labelled(rng), LabelShiftSettings(estimate=True)
    for index in range(100):
        finding = detect(reference, window(stream, rng, SOURCE[3], 2000), settings, index)
        assert finding.severity is Severity.OK, finding.explanation
        assert "MLLS" in finding.explanation


def test_mlls_alarms_on_a_shift_of_03_l1_in_every_window() -> None:
    # Priors (0.5, 0.3, 0.2) -> (0.35, 0.3, 0.35): L1 0.3, critical (>= 0.2).
    stream = Stream(3, overconfident=True)
    rng = np.random.default_rng(6)
    reference, settings = stream.labelled(rng), LabelShiftSettings(estimate=True)
    for index in range(20):
        current = window(stream, rng, np.array([0.35, 0.3, 0.35]), 2000)
        finding = detect(reference, current, settings, index)
        assert finding.severity is Severity.CRITICAL, finding.explanation
        assert "MLLS" in finding.explanation
        assert abs(finding.value - 0.3) < 0.06


def test_a_binary_score_only_model_is_read_by_its_positive_class() -> None:
    stream = Stream(2, overconfident=False)
    rng = np.random.default_rng(7)
    reference, settings = stream.labelled(rng), LabelShiftSettings(estimate=True)
    finding = detect(reference, window(stream, rng, np.array([0.2, 0.8]), 5000), settings, 1)
    assert "MLLS" in finding.explanation
    assert finding.details["prior[b]"] == pytest.approx(0.8, abs=0.03)
    assert finding.severity is Severity.CRITICAL


def test_a_model_without_probabilities_falls_back_to_bbse_and_says_so() -> None:
    stream = Stream(3, overconfident=False)
    rng = np.random.default_rng(8)
    reference = stream.labelled(rng)
    _, p = stream.draw(rng, 2000, np.array([0.35, 0.3, 0.35]))
    current = PredictionDrift(DriftSettings(), Binning(max_categories=200))
    outputs = Columns({}, {"prediction": stream.classes[p.argmax(axis=1)]})
    current.update(Batch(np.zeros(2000), Columns(), outputs))
    finding = detect(reference, current, LabelShiftSettings(estimate=True), 1)
    assert "BBSE" in finding.explanation
    assert "no probabilities" in finding.explanation
    assert finding.severity is Severity.CRITICAL


def test_too_few_labelled_probabilities_give_no_verdict() -> None:
    stream = Stream(3, overconfident=False)
    rng = np.random.default_rng(9)
    reference = stream.labelled(rng, n=200)
    detector = EstimatedLabelShift(
        LabelShiftSettings(),
        window(stream, rng, SOURCE[3], 2000),
        both(reference),
    )
    assert detector.evaluate("m", BOUNDS, detector) == []


def test_mlls_refuses_an_ill_conditioned_classifier() -> None:
    # A classifier blind between b and c: MLLS would split them arbitrarily.
    rng = np.random.default_rng(10)
    n = 3000
    y = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    p = np.where(y[:, None] == 0, [0.8, 0.1, 0.1], [0.1, 0.45, 0.45])
    predicted = np.where(y == 0, "a", rng.choice(["b", "c"], n)).astype(object)
    reference = Performance(PerformanceSettings())
    probabilities = {f"probability[{c}]": p[:, j] for j, c in enumerate("abc")}
    joined = Joined(
        np.zeros(n, dtype=np.int64), predicted, p[:, 0], CLASSES[y].astype(object),
        np.zeros(n), [], probabilities,
    )  # fmt: skip
    reference.update(joined, regression=False)
    current = PredictionDrift(DriftSettings(), Binning(max_categories=200))
    current.update(Batch(np.zeros(n), Columns(), Columns(probabilities, {"prediction": predicted})))
    finding = detect(reference, current, LabelShiftSettings(estimate=True), 1)
    assert finding.severity is Severity.OK
    assert "ill-conditioned" in finding.explanation
    assert "MLLS" in finding.explanation


def test_a_score_of_a_class_the_reference_lacks_falls_back_to_bbse() -> None:
    stream = Stream(2, overconfident=False)
    rng = np.random.default_rng(11)
    reference, current = stream.labelled(rng), window(stream, rng, SOURCE[2], 2000)
    detector = EstimatedLabelShift(LabelShiftSettings(), current, both(reference), "1")
    (finding,) = detector.evaluate("m", BOUNDS, detector)
    assert "BBSE" in finding.explanation
    assert finding.severity is Severity.OK
