"""Estimated performance: a classifier's accuracy, precision, recall, F1 and ROC AUC in a
window before its labels come (confidence-based performance estimation, CBPE).

The scores of the labelled reference calibrate the model (isotonic, per class; see
:mod:`streamwatch.detectors.cbpe`); a window's calibrated probabilities then give the
expected confusion matrix, and so each metric with a 95% interval. The interval holds
two errors: the window's (which labels its events will get) and the calibration's,
which every window of one reference shares (the spread of the estimate over REFITS
calibrations fitted on resamples of the reference's cells). A metric alarms as realized
performance does: worse than the reference's realized value by a relative margin
(``warning``/``critical``), significantly (one-sided, the reference's own sampling
error counted too; Benjamini-Hochberg across the window's metrics). With fewer than
``min_labels`` labelled reference events with probabilities, or ``min_samples`` scored
events in the window, there is no verdict.

CBPE assumes p(y|x) is what the reference says: under covariate shift it holds, under
label shift it does not (the classes' mix moved, so the calibrated probabilities are too
low for the class that grew). Where label-shift estimation is on
(``LABEL_SHIFT__ESTIMATE``), the calibrated probabilities are reweighted by the
estimated priors over the reference's, and the estimate follows the real accuracy.

Regression models get no estimate: the expected error of a regressor cannot be read
from its outputs alone (NannyML's direct loss estimation fits a second model of the
errors on the reference's features, a model streamwatch does not train).

The state is what prediction drift keeps of the window's probabilities (its
:class:`~streamwatch.detectors.cells.Cells`); the realized values join the same series
in the report when the window's labels come.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Self

import numpy as np

from streamwatch.config import DetectorSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Derived, Finding
from streamwatch.detectors.cbpe import DRAWS, Calibrator, Interval, estimate, reweight
from streamwatch.detectors.cells import distributions
from streamwatch.detectors.drift import PredictionDrift
from streamwatch.detectors.performance import LabelledReference, Performance
from streamwatch.detectors.priors import estimate_priors
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

NAME = "estimated_performance"
REFITS = 50  # calibrations on resampled references: the calibration's own error
Z = 1.959964  # of a 95% interval
# The calibrations fitted on each labelled reference, by what they were fitted for: a
# window's detector evaluates once, and the reference is the same for many windows.
_Key = tuple[int, tuple[str, ...], str]
_FITTED: weakref.WeakKeyDictionary[Performance, tuple[_Key, list[Calibrator]]] = (
    weakref.WeakKeyDictionary()
)


class EstimatedPerformance(Derived):
    """A window's probabilities (prediction drift's cells), calibrated on the labelled
    reference, against the reference's realized performance (a window detector)."""

    name = NAME

    def __init__(
        self,
        settings: DetectorSettings,
        predictions: PredictionDrift,
        labelled: Callable[[WindowBounds], LabelledReference | None],
    ) -> None:
        self.settings = settings.estimated_performance
        self.shift = settings.label_shift
        self.positive = settings.performance.positive_class
        self.predictions = predictions
        self.labelled = labelled

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]:
        """Against the labelled reference; the drift ``reference`` is not read."""
        references = self.labelled(window)
        if references is None or references.whole.cells.n < self.settings.min_labels:
            return []
        labelled, compared = references.whole, references.phase
        classes = sorted({actual for _, actual in labelled.confusion})
        current = self.predictions.cells
        calibrators = self._calibrators(labelled, classes)
        cells = distributions(current, classes, self.positive)
        if not calibrators or cells is None or cells[2].sum() < self.settings.min_samples:
            return []
        probabilities, predicted, counts = cells
        weights = None
        if self.shift.enabled and self.shift.estimate:
            priors = estimate_priors(labelled, current, self.shift, self.positive, window.index)
            if priors is not None:
                ratio = {
                    c: q / p if p > 0 else 1.0
                    for c, q, p in zip(priors.classes, priors.priors, priors.reference, strict=True)
                }
                weights = np.array([ratio.get(c, 1.0) for c in classes])
        positive = classes.index(self.positive) if self.positive in classes else None
        # What ranks a binary model's events for ROC AUC: its raw positive probability.
        score = probabilities[:, positive] if positive is not None and len(classes) == 2 else None

        def estimated(calibrator: Calibrator, draws: int) -> dict[str, Interval]:
            calibrated = calibrator.apply(probabilities)
            if weights is not None:
                calibrated = reweight(calibrated, weights)
            rng = np.random.default_rng(window.index)
            return estimate(calibrated, predicted, counts, positive, score, rng, draws)

        estimates = estimated(calibrators[0], DRAWS)
        refitted = [estimated(c, 1) for c in calibrators[1:]]
        realized = compared.realized()
        names = [name for name in estimates if name in realized]
        for name in names:
            spread = np.std([e[name].value for e in refitted if name in e])
            estimates[name] = _widened(estimates[name], float(spread))
        pvalues = [_pvalue(estimates[n], *realized[n]) for n in names]
        qvalues = st.benjamini_hochberg(pvalues)
        corrected = weights is not None
        return [
            self._finding(
                model, window, n, estimates[n], realized[n][0], p, q, compared.n, corrected
            )
            for n, p, q in zip(names, pvalues, qvalues, strict=True)
        ]

    def _calibrators(self, labelled: Performance, classes: list[str]) -> list[Calibrator]:
        """The calibration, then REFITS fitted on resamples of the reference's cells (none
        when it cannot be fitted); kept with the labelled reference while it does not
        change, for every window's detector (0.11 s a fit for a binary model and a
        10,000-event reference, on this 2-core machine under load)."""
        key = (labelled.cells.n, tuple(classes), self.positive)
        kept = _FITTED.get(labelled)
        if kept is not None and kept[0] == key:
            return kept[1]
        fitted: list[Calibrator] = []
        cells = distributions(labelled.cells, classes, self.positive)
        first = None if cells is None else Calibrator.fit(*cells)
        if cells is not None and first is not None:
            probabilities, actual, counts = cells
            total = int(counts.sum())
            rng = np.random.default_rng(total)
            resamples = rng.multinomial(total, counts / total, size=REFITS)
            refits = [Calibrator.fit(probabilities, actual, r.astype(float)) for r in resamples]
            fitted = [first, *(c for c in refits if c is not None)]
        _FITTED[labelled] = (key, fitted)
        return fitted

    def _finding(
        self,
        model: str,
        window: WindowBounds,
        name: str,
        interval: Interval,
        reference: float,
        pvalue: float,
        qvalue: float,
        n_reference: int,
        corrected: bool,
    ) -> Finding:
        settings = self.settings
        gap = reference - interval.value
        worse = gap / abs(reference) if reference else (math.inf if gap > 0 else 0.0)
        significant = qvalue <= settings.alpha
        severity = Severity.of(worse, settings.warning, settings.critical)
        severity = severity if significant else Severity.OK
        threshold = severity.threshold(settings.warning, settings.critical)
        how = ", corrected for the estimated class priors" if corrected else ""
        change = (
            f"estimated {name} {interval.value:.4g} [{interval.low:.4g}, {interval.high:.4g}]"
            f"{how}, against {reference:.4g} realized in the reference"
        )
        if severity is Severity.OK:
            verdict = f"no estimated degradation: {change}"
        else:
            verdict = (
                f"{severity.value} estimated degradation before labels: {change}, worse by "
                f"{worse:.1%} relative (≥ {threshold:.0%}), significant (q = {qvalue:.2g})"
            )
        n = int(self.predictions.cells.n)
        return Finding(
            model=model,
            detector=NAME,
            subject=name,
            statistic="degradation",
            value=worse,
            threshold=threshold,
            severity=severity,
            n_reference=n_reference,
            n_current=n,
            window=window,
            explanation=f"model '{model}': {verdict}; {n:,} scored events, calibrated on "
            f"{n_reference:,} labelled ones.",
            details={
                "estimated": interval.value,
                "low": interval.low,
                "high": interval.high,
                "reference": reference,
                "p_value": pvalue,
                "q_value": qvalue,
                "corrected": float(corrected),
            },
        )


def _widened(interval: Interval, spread: float) -> Interval:
    """The window's interval with the calibration's error (its standard deviation)
    added, in quadrature, to each side."""
    value = interval.value
    low = value - math.hypot(value - interval.low, Z * spread)
    high = value + math.hypot(interval.high - value, Z * spread)
    return Interval(value, low, high)


def _pvalue(interval: Interval, reference: float, reference_error: float) -> float:
    """That the metric fell below the reference's: the estimate's spread from its
    interval, the reference's its standard error."""
    spread = (interval.high - interval.low) / (2 * Z)
    return st.one_sided(reference - interval.value, math.hypot(spread, reference_error))
