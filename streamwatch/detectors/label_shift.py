"""Label shift: the class priors moved, with labels (observed) or without (estimated).

With labels, the labelled window's class distribution is compared with the reference's
(the L1 distance between class shares, a chi-square test). Without labels, Black
Box Shift Estimation (Lipton, Wang and Smola, 2018): under label shift p(x|y) is fixed,
so the current predicted-class distribution mu = C w, where C[i, j] = p(ŷ=i, y=j) on
the reference; solving for the importance weights w gives the current priors
q = w · p_ref(y), with an interval from a parametric bootstrap of C and mu. Whether the
priors moved at all is tested as the paper detects shift: a chi-square test of the
predicted classes against the reference's (under label shift, the priors cannot move
without the predictions moving). An ill-conditioned C (a classifier that confuses
classes) gives no estimate, and the finding says so.

>>> import numpy as np
>>> confusion = {("a", "a"): 450, ("b", "a"): 50, ("a", "b"): 50, ("b", "b"): 450}
>>> estimate = bbse(confusion, {"a": 2600, "b": 7400}, np.random.default_rng(0))
>>> [round(p, 2) for p in estimate.priors], [round(p, 2) for p in estimate.reference]
([0.2, 0.8], [0.5, 0.5])

Both keep no state of their own: :class:`ObservedLabelShift` reads the confusion
matrices of performance (the window's and the outcome reference's),
:class:`EstimatedLabelShift` the predicted classes that prediction drift counts and the
confusion matrix of the model's labelled reference.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np

from streamwatch.config import LabelShiftSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Derived, Finding
from streamwatch.detectors.drift import PredictionDrift
from streamwatch.detectors.performance import Performance
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

NAME = "label_shift"
MAX_CONDITION = 50.0  # beyond this, C^-1 amplifies noise into nonsense
BOOTSTRAP = 1000


class ObservedLabelShift(Derived):
    """A labelled window's classes against the outcome reference's (an outcome detector)."""

    name = NAME

    def __init__(self, settings: LabelShiftSettings, performance: Performance) -> None:
        self.settings = settings
        self.performance = performance

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]:
        current, before = self.performance.confusion, reference.performance.confusion
        finding = observed(model, window, current, before, self.settings)
        return [finding] if finding else []


class EstimatedLabelShift(Derived):
    """A window's predicted classes against the labelled reference (BBSE; a window
    detector). ``labelled`` gives the confusion matrix of the model's labelled reference,
    complete or still pooling, or None: none yet, or the model is a regressor."""

    name = NAME

    def __init__(
        self,
        settings: LabelShiftSettings,
        predictions: PredictionDrift,
        labelled: Callable[[], Performance | None],
    ) -> None:
        self.settings = settings
        self.predictions = predictions
        self.labelled = labelled

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]:
        """Against the labelled reference; the drift ``reference`` is not read."""
        labelled = self.labelled()
        predicted = self.predictions.categorical.get("prediction")
        if labelled is None or predicted is None:
            return []
        finding = estimated(model, window, labelled.confusion, predicted.counts, self.settings)
        return [finding] if finding else []


@dataclass(frozen=True, slots=True)
class Estimate:
    classes: list[str]
    priors: list[float]  # estimated current class priors
    reference: list[float]  # the reference's class priors
    low: list[float]  # 95% bootstrap interval of the priors
    high: list[float]
    shift: float  # L1 distance between priors and reference
    pvalue: float  # of the predicted classes being distributed as in the reference
    condition: float


def _joint(confusion: Mapping[tuple[str, str], int], classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    joint = np.zeros((len(classes), len(classes)))
    for (predicted, actual), count in confusion.items():
        if predicted in index and actual in index:
            joint[index[predicted], index[actual]] += count
    return joint


def _priors(joint: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Current class priors from a joint confusion (normalised) and predicted shares."""
    weights = np.clip(np.linalg.lstsq(joint, mu, rcond=None)[0], 0.0, None)
    reference: np.ndarray = joint.sum(axis=0)
    priors: np.ndarray = weights * reference
    total = float(priors.sum())
    return priors / total if total > 0 else reference


def bbse(
    confusion: Mapping[tuple[str, str], int],
    predicted: Mapping[str, int],
    rng: np.random.Generator,
) -> Estimate | None:
    """Estimate the current class priors; ``None`` when C is too ill-conditioned."""
    classes = sorted({a for _, a in confusion} | {p for p, _ in confusion})
    counts = _joint(confusion, classes)
    n_ref, n_cur = int(counts.sum()), int(sum(predicted.get(c, 0) for c in classes))
    joint = counts / n_ref
    # How well the classifier tells the classes apart: the condition number of p(ŷ|y),
    # which, unlike the joint's, does not grow just because one class is rare.
    priors_ref = joint.sum(axis=0)
    if n_cur == 0 or (priors_ref == 0).any():
        return None
    condition = float(np.linalg.cond(joint / priors_ref))
    if not math.isfinite(condition) or condition > MAX_CONDITION:
        return None
    mu = np.array([predicted.get(c, 0) for c in classes], dtype=np.float64) / n_cur
    priors, reference = _priors(joint, mu), joint.sum(axis=0)
    shift = float(np.abs(priors - reference).sum())
    # The interval: bootstrap the reference confusion and the current predictions.
    resampled = rng.multinomial(n_ref, joint.ravel(), size=BOOTSTRAP).reshape(-1, *joint.shape)
    around = rng.multinomial(n_cur, mu, size=BOOTSTRAP) / n_cur
    estimates = [_priors(c / n_ref, m) for c, m in zip(resampled, around, strict=True)]
    low, high = np.percentile(np.array(estimates), [2.5, 97.5], axis=0)
    pvalue = st.chi_square_pvalue(counts.sum(axis=1), mu * n_cur)
    return Estimate(
        classes,
        priors.tolist(),
        reference.tolist(),
        low.tolist(),
        high.tolist(),
        shift,
        pvalue,
        condition,
    )


def estimated(
    model: str,
    window: WindowBounds,
    confusion: Mapping[tuple[str, str], int],
    predicted: Mapping[str, int],
    settings: LabelShiftSettings,
) -> Finding | None:
    """The BBSE finding of a window: its predictions against the labelled reference."""
    n_ref, n_cur = sum(confusion.values()), sum(predicted.values())
    if min(n_ref, n_cur) < settings.min_samples:
        return None
    estimate = bbse(confusion, predicted, np.random.default_rng(window.index))
    if estimate is None:
        severity, value, pvalue = Severity.OK, 0.0, 1.0
        text = (
            "label shift not estimated: the reference confusion matrix is ill-conditioned "
            "(the classifier confuses classes too much for its predictions to reveal priors)"
        )
        details: dict[str, float] = {}
    else:
        value, pvalue = estimate.shift, estimate.pvalue
        # Significant: the predictions moved, and the interval of some class's prior
        # leaves out its reference value (a near-blind classifier gives intervals
        # spanning everything: no verdict from it).
        excluded = any(
            not lo <= r <= hi
            for lo, r, hi in zip(estimate.low, estimate.reference, estimate.high, strict=True)
        )
        significant = pvalue <= settings.alpha and excluded
        severity = Severity.of(value, settings.warning, settings.critical)
        severity = severity if significant else Severity.OK
        moves = ", ".join(
            f"{c} {r:.0%} → {p:.0%} [{lo:.0%}, {hi:.0%}]"
            for c, r, p, lo, hi in zip(
                estimate.classes,
                estimate.reference,
                estimate.priors,
                estimate.low,
                estimate.high,
                strict=True,
            )
        )
        verdict = (
            f"{severity.value} label shift" if severity is not Severity.OK else "no label shift"
        )
        text = (
            f"{verdict} estimated from predictions (BBSE): L1 {value:.3f}, "
            f"p = {pvalue:.2g}; class priors {moves}"
        )
        details = {"p_value": pvalue, "condition": estimate.condition}
        for i, c in enumerate(estimate.classes):
            details[f"prior[{c}]"] = estimate.priors[i]
            details[f"prior_low[{c}]"], details[f"prior_high[{c}]"] = (
                estimate.low[i],
                estimate.high[i],
            )
            details[f"prior_reference[{c}]"] = estimate.reference[i]
    return Finding(
        model=model,
        detector=NAME,
        subject="estimated_priors",
        statistic="l1_shift",
        value=value,
        threshold=severity.threshold(settings.warning, settings.critical),
        severity=severity,
        n_reference=n_ref,
        n_current=n_cur,
        window=window,
        explanation=f"model '{model}': {text}.",
        details=details,
    )


def observed(
    model: str,
    window: WindowBounds,
    current: Mapping[tuple[str, str], int],
    reference: Mapping[tuple[str, str], int],
    settings: LabelShiftSettings,
) -> Finding | None:
    """The labelled class distribution of a window against the reference's."""
    cur, ref = _labels(current), _labels(reference)
    if min(cur.total(), ref.total()) < settings.min_samples:
        return None
    classes = sorted(cur.keys() | ref.keys())
    ref_counts = np.array([ref[c] for c in classes], dtype=np.float64)
    cur_counts = np.array([cur[c] for c in classes], dtype=np.float64)
    # L1 between the class shares: the scale of the BBSE estimate, so that one pair of
    # thresholds means the same shift of the priors for both.
    distance = float(np.abs(cur_counts / cur_counts.sum() - ref_counts / ref_counts.sum()).sum())
    pvalue = st.chi_square_pvalue(ref_counts, cur_counts)
    significant = pvalue <= settings.alpha
    severity = (
        Severity.of(distance, settings.warning, settings.critical) if significant else Severity.OK
    )
    shares = ", ".join(
        f"{c} {r / ref_counts.sum():.0%} → {k / cur_counts.sum():.0%}"
        for c, r, k in zip(classes, ref_counts, cur_counts, strict=True)
    )
    return Finding(
        model=model,
        detector=NAME,
        subject="labels",
        statistic="l1_shift",
        value=distance,
        threshold=severity.threshold(settings.warning, settings.critical),
        severity=severity,
        n_reference=int(ref_counts.sum()),
        n_current=int(cur_counts.sum()),
        window=window,
        explanation=f"model '{model}': labels {'steady' if severity is Severity.OK else 'shifted'}"
        f": L1 {distance:.3f}, chi-square p = {pvalue:.2g}; {shares}.",
        details={"p_value": pvalue},
    )


def _labels(confusion: Mapping[tuple[str, str], int]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (_, actual), count in confusion.items():
        counts[actual] += count
    return counts
