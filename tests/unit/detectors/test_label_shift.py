"""Label shift, observed and estimated (BBSE), on seeded 3-class streams."""

from __future__ import annotations

from collections import Counter

import numpy as np

from streamwatch.config import LabelShiftSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.label_shift import bbse, estimated, observed
from streamwatch.windows import WindowBounds

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
        estimated("m", BOUNDS, ref, predicted(draw(rng, 2000, REFERENCE_PRIORS)[0]), settings)
        for _ in range(200)
    ]
    assert all(f is not None and f.severity is Severity.OK for f in findings)


def test_bbse_alarms_on_a_shift_of_03_l1_in_every_window() -> None:
    # Priors (0.5, 0.3, 0.2) -> (0.35, 0.3, 0.35): L1 0.3, critical (>= 0.2).
    rng = np.random.default_rng(3)
    ref = reference(rng)
    for _ in range(20):
        yhat, _ = draw(rng, 2000, np.array([0.35, 0.3, 0.35]))
        finding = estimated("m", BOUNDS, ref, predicted(yhat), LabelShiftSettings())
        assert finding is not None
        assert finding.severity is Severity.CRITICAL
        assert "BBSE" in finding.explanation


def test_an_ill_conditioned_classifier_gives_no_estimate_and_says_why() -> None:
    # Classes b and c are indistinguishable to this classifier.
    ref = Counter(
        {("a", "a"): 500, ("b", "b"): 250, ("b", "c"): 250, ("c", "b"): 250, ("c", "c"): 250}
    )
    finding = estimated("m", BOUNDS, ref, {"a": 300, "b": 400, "c": 300}, LabelShiftSettings())
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
