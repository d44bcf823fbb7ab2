"""Label shift: the class priors moved, with labels (observed) or without (estimated).

With labels, the labelled window's class distribution is compared with the reference's
(the L1 distance between class shares, a chi-square test). Without labels, the priors
are estimated from the window's predictions against the labelled reference
(:mod:`streamwatch.detectors.priors`): by maximum likelihood (MLLS, EM on probabilities
calibrated by bias-corrected temperature scaling; the default) or by Black Box Shift
Estimation (BBSE, predicted classes only; the fallback for a model sending no
probabilities), with a 95% interval. Measured on seeded streams of two-dimensional
Gaussian classes scored by a softmax model, calibrated on the source or overconfident
(logits x2, with biases), about 87% accurate, a 10,000-event reference and 40 windows
of 10,000 events with priors shifted by up to L1 ~0.8 (``.venv/bin/pytest -s
tests/unit/detectors/test_priors.py -k accuracy``), the mean (worst) L1 error of the
priors:

==========================  ==============  ==============
stream                      MLLS            BBSE
==========================  ==============  ==============
binary, calibrated          0.0055 (0.019)  0.0073 (0.022)
binary, overconfident       0.0097 (0.025)  0.0168 (0.046)
3 classes, calibrated       0.0086 (0.023)  0.0127 (0.029)
3 classes, overconfident    0.0116 (0.026)  0.0113 (0.026)
==========================  ==============  ==============

Most of what is left is the reference's own sampling error, common to every window and
to both methods (another reference draw moves the mean by ±0.005); for classifiers
about 80% accurate the errors are about 1.5 times these.

Whether the priors moved at all is tested as the papers detect shift: a chi-square test
of the predicted classes against the reference's (under label shift, the priors cannot
move without the predictions moving); a finding alarms when that test is significant
and some class's interval leaves out its reference prior. An ill-conditioned classifier
(one that confuses classes) gives no estimate, and the finding says so.

Both keep no state of their own: :class:`ObservedLabelShift` reads the confusion
matrices of performance (the window's and the outcome reference's),
:class:`EstimatedLabelShift` what prediction drift keeps of the window's predictions
(classes and probabilities) and the model's labelled reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Self

import numpy as np

from streamwatch.config import LabelShiftSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Derived, Finding
from streamwatch.detectors.cells import Cells
from streamwatch.detectors.drift import PredictionDrift
from streamwatch.detectors.performance import LabelledReference, Performance
from streamwatch.detectors.priors import MLLS, Estimate, bbse, estimate_priors, method
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

NAME = "label_shift"
__all__ = ["Estimate", "EstimatedLabelShift", "ObservedLabelShift", "bbse", "estimate_priors"]


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
    """A window's predictions against the labelled reference (MLLS or BBSE; a window
    detector). ``labelled`` gives the model's labelled reference (its confusion matrix
    and probabilities by actual class), once complete, or None: none yet, or
    the model is a regressor. ``positive``: the class a binary model's score is of."""

    name = NAME

    def __init__(
        self,
        settings: LabelShiftSettings,
        predictions: PredictionDrift,
        labelled: Callable[[WindowBounds], LabelledReference | None],
        positive: str = "1",
    ) -> None:
        self.settings = settings
        self.predictions = predictions
        self.labelled = labelled
        self.positive = positive

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]:
        """Against the labelled reference; the drift ``reference`` is not read."""
        references = self.labelled(window)
        labelled = None if references is None else references.whole
        predicted = self.predictions.categorical.get("prediction")
        if labelled is None or predicted is None:
            return []
        finding = estimated(
            model,
            window,
            labelled,
            self.predictions.cells,
            predicted.counts,
            self.settings,
            self.positive,
        )
        return [finding] if finding else []


def estimated(
    model: str,
    window: WindowBounds,
    labelled: Performance,
    current: Cells,
    predicted: Mapping[str, int],
    settings: LabelShiftSettings,
    positive: str,
) -> Finding | None:
    """The finding of a window: its predictions (classes and, for MLLS, probabilities,
    ``current``) against the labelled reference; None without enough of either."""
    how = method(settings, labelled, current, positive)
    if how == MLLS:
        n_ref, n_cur = labelled.cells.n, current.n
        name = "MLLS, maximum likelihood on calibrated probabilities"
    else:
        n_ref, n_cur = labelled.confusion.total(), sum(predicted.values())
        name = "BBSE, from predicted classes"
        if settings.method == "mlls":
            name += "; the model sends no probabilities it can read, so no maximum likelihood"
    if min(n_ref, n_cur) < settings.min_samples:
        return None
    estimate = estimate_priors(labelled, current, settings, positive, window.index, predicted)
    if estimate is None:
        severity, value, pvalue = Severity.OK, 0.0, 1.0
        text = (
            f"label shift not estimated ({name}): the reference confusion matrix is "
            "ill-conditioned (the classifier confuses classes too much for its predictions "
            "to reveal priors)"
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
            f"{verdict} estimated from predictions ({name}): L1 {value:.3f}, "
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
