"""Performance drift: a window's metrics, once its labels have joined, against the
reference's.

Classification: accuracy, precision, recall and F1 of the positive class, ROC AUC, log
loss, Brier score and expected calibration error (10 bins). Regression: MAE, RMSE and
MAPE. A classifier's probabilities are kept too, as :class:`Cells` by actual class: what
performance estimation calibrates on, and maximum likelihood label shift. A metric
alarms when it is worse than the reference's by a relative margin
(``warning``/``critical``; ECE by the same margins in absolute terms) and the
degradation is significant one-sidedly, Benjamini-Hochberg-adjusted across the window's
metrics, with at least ``min_labels`` labels on both sides. State is aggregates only:
the confusion matrix, score-bin counts by label, and sums (and sums of squares) of
per-event losses, so that states merge exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamwatch.config import PerformanceSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Finding, LabelledBatch
from streamwatch.detectors.cells import Cells
from streamwatch.join import Joined
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

SCORE_BINS = 100
ECE_BINS = 10
RESAMPLES = (1_000, 20_000)  # p-values down to 5e-5: below ALPHA / 8 metrics
_EPS = 1e-15  # log loss of a confident mistake is large, not infinite
_LOSSES = ("log_loss", "brier", "abs_error", "sq_error", "abs_pct_error")


@dataclass(frozen=True, slots=True)
class _Metric:
    name: str
    current: float
    reference: float
    pvalue: float  # of a degradation at least this large
    higher_is_better: bool
    absolute: bool = False  # ECE: margins in absolute terms


class Performance:
    """Labelled outcomes of one window, for classification or regression."""

    name = "performance"

    def __init__(self, settings: PerformanceSettings) -> None:
        self.settings = settings
        self.confusion: Counter[tuple[str, str]] = Counter()
        self.score_counts = np.zeros((2, SCORE_BINS), dtype=np.int64)  # [negative|positive]
        self.score_sums = np.zeros(SCORE_BINS)
        self.sums: dict[str, list[float]] = {k: [0, 0.0, 0.0] for k in _LOSSES}  # n, Σ, Σ²
        self.cells = Cells()  # the probabilities by actual class

    @property
    def n(self) -> int:
        return max(self.confusion.total(), int(self.sums["abs_error"][0]))

    def observe(self, labels: LabelledBatch) -> None:
        self.update(labels.joined, labels.regression)

    def update(self, joined: Joined, regression: bool) -> None:
        if joined.n == 0:
            return
        if regression:
            self._update_regression(joined)
            return
        predicted = [str(p) for p in joined.prediction.tolist()]
        actual = [class_label(v) for v in joined.label.tolist()]
        self.confusion.update(zip(predicted, actual, strict=True))
        outputs = joined.probabilities or {"score": joined.score}
        self.cells.add(np.array(actual, dtype=np.object_), outputs)
        scored = ~np.isnan(joined.score)
        if scored.any():
            positive = np.array([a == self.settings.positive_class for a in actual])[scored]
            score = np.clip(joined.score[scored], 0.0, 1.0)
            bins = np.minimum((score * SCORE_BINS).astype(np.intp), SCORE_BINS - 1)
            for row, mask in ((0, ~positive), (1, positive)):
                self.score_counts[row] += np.bincount(bins[mask], minlength=SCORE_BINS)
            self.score_sums += np.bincount(bins, weights=score, minlength=SCORE_BINS)
            p = np.clip(np.where(positive, score, 1 - score), _EPS, 1.0)
            self._add("log_loss", -np.log(p))
            self._add("brier", np.square(score - positive))

    def _update_regression(self, joined: Joined) -> None:
        y = np.array([v if isinstance(v, int | float) else np.nan for v in joined.label.tolist()])
        yhat = np.array(
            [v if isinstance(v, int | float) else np.nan for v in joined.prediction.tolist()]
        )
        # Errors beyond 1e50 are input errors; their fourth powers (in the variance of
        # the squared error) would overflow.
        ok = np.isfinite(y) & np.isfinite(yhat) & (np.abs(yhat - y) < 1e50)
        error = yhat[ok] - y[ok]
        self._add("abs_error", np.abs(error))
        self._add("sq_error", np.square(error))
        nonzero = y[ok] != 0
        self._add("abs_pct_error", np.abs(error[nonzero] / y[ok][nonzero]))

    def _add(self, name: str, values: np.ndarray) -> None:
        acc = self.sums[name]
        acc[0] += len(values)
        acc[1] += float(values.sum())
        acc[2] += float(np.square(values).sum())

    def merge(self, other: Performance) -> None:
        self.confusion.update(other.confusion)
        self.score_counts += other.score_counts
        self.score_sums += other.score_sums
        self.cells.merge(other.cells)
        for name, (n, total, squares) in other.sums.items():
            acc = self.sums[name]
            acc[0], acc[1], acc[2] = acc[0] + n, acc[1] + total, acc[2] + squares

    def snapshot(self) -> dict[str, Any]:
        return {
            "confusion": [[p, a, c] for (p, a), c in self.confusion.items()],
            "score_counts": self.score_counts.tolist(),
            "score_sums": self.score_sums.tolist(),
            "sums": self.sums,
            "cells": self.cells.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.confusion = Counter({(str(p), str(a)): int(c) for p, a, c in state["confusion"]})
        self.score_counts = np.asarray(state["score_counts"], dtype=np.int64)
        self.score_sums = np.asarray(state["score_sums"], dtype=np.float64)
        self.sums = {k: [float(x) for x in v] for k, v in state["sums"].items()}
        # A checkpoint from before the probabilities were kept has none.
        self.cells = Cells.restore(state["cells"]) if "cells" in state else Cells()

    def realized(self) -> dict[str, tuple[float, float]]:
        """A classifier's accuracy, precision, recall and F1 of the positive class, and
        ROC AUC where it sent scores, each with its standard error (a proportion's over
        its own denominator, F1's by the delta method, ROC AUC's Hanley-McNeil): what
        estimated performance is measured against."""
        positive = self.settings.positive_class
        values = {"accuracy": _rate(*_accuracy(self.confusion))}
        if any(positive in pair for pair in self.confusion):
            values["precision"] = _rate(*_precision(self.confusion, positive))
            values["recall"] = _rate(*_recall(self.confusion, positive))
            f1, variance = _f1_and_variance(self.confusion, positive)
            values["f1"] = (f1, math.sqrt(variance) / max(self.confusion.total(), 1))
        if self.score_counts.sum():
            auc, variance = _auc(self.score_counts)
            values["roc_auc"] = (auc, math.sqrt(variance))
        return {name: v for name, v in values.items() if math.isfinite(v[0])}

    # -- evaluation ------------------------------------------------------------------

    def evaluate(self, model: str, window: WindowBounds, reference: Performance) -> list[Finding]:
        minimum = self.settings.min_labels
        if min(self.n, reference.n) < minimum:
            return []
        metrics = self._metrics(reference)
        qvalues = st.benjamini_hochberg([m.pvalue for m in metrics])
        return [
            self._finding(model, window, m, q, reference.n)
            for m, q in zip(metrics, qvalues, strict=True)
        ]

    def _metrics(self, ref: Performance) -> list[_Metric]:
        metrics: list[_Metric] = []
        if self.sums["abs_error"][0]:
            for name, key, transform in (
                ("mae", "abs_error", None),
                ("rmse", "sq_error", math.sqrt),
                ("mape", "abs_pct_error", None),
            ):
                metrics += _mean_metric(name, self.sums[key], ref.sums[key], transform)
            return metrics
        positive = self.settings.positive_class
        metrics.append(
            _proportion("accuracy", *_accuracy(self.confusion), *_accuracy(ref.confusion))
        )
        for name, cells in (("precision", _precision), ("recall", _recall)):
            metrics.append(
                _proportion(name, *cells(self.confusion, positive), *cells(ref.confusion, positive))
            )
        metrics.append(_f1(self.confusion, ref.confusion, positive))
        if self.score_counts.sum() and ref.score_counts.sum():
            metrics.append(_auc_metric(self.score_counts, ref.score_counts))
            metrics += _mean_metric("log_loss", self.sums["log_loss"], ref.sums["log_loss"], None)
            metrics += _mean_metric("brier", self.sums["brier"], ref.sums["brier"], None)
            metrics.append(_ece_metric(self, ref))
        return [m for m in metrics if math.isfinite(m.current) and math.isfinite(m.reference)]

    def _finding(
        self, model: str, window: WindowBounds, m: _Metric, qvalue: float, n_reference: int
    ) -> Finding:
        warning, critical = self.settings.warning, self.settings.critical
        if m.absolute:
            worse = m.current - m.reference
        else:
            gap = m.reference - m.current if m.higher_is_better else m.current - m.reference
            worse = gap / abs(m.reference) if m.reference else (math.inf if gap > 0 else 0.0)
        significant = qvalue <= self.settings.alpha
        severity = Severity.of(worse, warning, critical) if significant else Severity.OK
        threshold = severity.threshold(warning, critical)
        change = f"{m.name} {m.reference:.4g} → {m.current:.4g}"
        how = "in absolute terms" if m.absolute else "relative"
        if severity is Severity.OK:
            verdict = f"no degradation: {change}"
        else:
            verdict = (
                f"{severity.value} degradation: {change}, worse by {worse:.1%} {how} "
                f"(≥ {threshold:.0%}), significant (q = {qvalue:.2g})"
            )
        return Finding(
            model=model,
            detector=self.name,
            subject=m.name,
            statistic="degradation",
            value=worse,
            threshold=threshold,
            severity=severity,
            n_reference=n_reference,
            n_current=self.n,
            window=window,
            explanation=f"model '{model}': {verdict}; {self.n:,} labels against "
            f"{n_reference:,} in the reference.",
            details={
                "current": m.current,
                "reference": m.reference,
                "p_value": m.pvalue,
                "q_value": qvalue,
            },
        )


@dataclass(frozen=True, slots=True)
class LabelledReference:
    """The labelled reference a window's estimates read: ``whole`` calibrates, ``phase``
    (at the window's phase of the season; the whole without one) is what the window is
    compared with, as realized performance compares it."""

    whole: Performance
    phase: Performance


def class_label(value: object) -> str:
    """A label as the class it names: 1, 1.0, "1" and True are one class."""
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _accuracy(confusion: Counter[tuple[str, str]]) -> tuple[int, int]:
    return sum(c for (p, a), c in confusion.items() if p == a), confusion.total()


def _precision(confusion: Counter[tuple[str, str]], positive: str) -> tuple[int, int]:
    predicted = sum(c for (p, _), c in confusion.items() if p == positive)
    return confusion[(positive, positive)], predicted


def _recall(confusion: Counter[tuple[str, str]], positive: str) -> tuple[int, int]:
    actual = sum(c for (_, a), c in confusion.items() if a == positive)
    return confusion[(positive, positive)], actual


def _rate(k: int, n: int) -> tuple[float, float]:
    """A proportion and its standard error."""
    if not n:
        return math.nan, math.nan
    p = k / n
    return p, math.sqrt(p * (1 - p) / n)


def _proportion(name: str, k: int, n: int, k_ref: int, n_ref: int) -> _Metric:
    """Two-proportion z-test (pooled) that the current rate is lower."""
    if n == 0 or n_ref == 0:
        return _Metric(name, math.nan, math.nan, 1.0, True)
    # Lower now is the reference's rate being higher.
    return _Metric(name, k / n, k_ref / n_ref, st.higher_rate_pvalue(k_ref, n_ref, k, n), True)


def _f1_and_variance(confusion: Counter[tuple[str, str]], positive: str) -> tuple[float, float]:
    """F1 of the positive class and its variance by the delta method (multinomial)."""
    n = confusion.total()
    tp = confusion[(positive, positive)]
    fp = sum(c for (p, a), c in confusion.items() if p == positive and a != positive)
    fn = sum(c for (p, a), c in confusion.items() if a == positive and p != positive)
    denominator = 2 * tp + fp + fn
    if n == 0 or denominator == 0:
        return math.nan, 0.0
    f1 = 2 * tp / denominator
    gradient = np.array([2 * (fp + fn), -2 * tp, -2 * tp]) / denominator**2
    cells = np.array([tp, fp, fn]) / n
    covariance = n * (np.diag(cells) - np.outer(cells, cells))
    return f1, float(gradient @ covariance @ gradient)


def _f1(current: Counter[tuple[str, str]], ref: Counter[tuple[str, str]], positive: str) -> _Metric:
    f1, var = _f1_and_variance(current, positive)
    f1_ref, var_ref = _f1_and_variance(ref, positive)
    return _Metric("f1", f1, f1_ref, st.one_sided(f1_ref - f1, math.sqrt(var + var_ref)), True)


def _auc(counts: np.ndarray) -> tuple[float, float]:
    """ROC AUC from score-bin counts (ties within a bin count half) and its
    Hanley-McNeil standard error."""
    negatives, positives = counts[0].astype(np.float64), counts[1].astype(np.float64)
    n0, n1 = negatives.sum(), positives.sum()
    if n0 == 0 or n1 == 0:
        return math.nan, 0.0
    below = np.cumsum(negatives) - negatives
    auc = float((positives * (below + negatives / 2)).sum() / (n0 * n1))
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n0 * n1)
    return auc, max(variance, 0.0)


def _auc_metric(current: np.ndarray, ref: np.ndarray) -> _Metric:
    auc, var = _auc(current)
    auc_ref, var_ref = _auc(ref)
    return _Metric(
        "roc_auc", auc, auc_ref, st.one_sided(auc_ref - auc, math.sqrt(var + var_ref)), True
    )


def _mean_metric(
    name: str, current: list[float], ref: list[float], transform: Callable[[float], float] | None
) -> list[_Metric]:
    """A mean loss (lower is better), z-tested on the means; ``transform`` reports it
    (RMSE is the square root of the mean squared error)."""
    (n, total, squares), (n_ref, total_ref, squares_ref) = current, ref
    if n < 2 or n_ref < 2:
        return []
    mean, mean_ref = total / n, total_ref / n_ref
    var = max(squares / n - mean * mean, 0.0) / n
    var_ref = max(squares_ref / n_ref - mean_ref * mean_ref, 0.0) / n_ref
    pvalue = st.one_sided(mean - mean_ref, math.sqrt(var + var_ref))
    show = transform or (lambda x: x)
    return [_Metric(name, show(mean), show(mean_ref), pvalue, False)]


def _ece(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Expected calibration error over 10 equal-width bins, of one window's cells
    (counts: label x score bin; sums: scores per bin) or of a stack of them."""
    coarse = SCORE_BINS // ECE_BINS
    n = counts.reshape(*counts.shape[:-1], ECE_BINS, coarse).sum(axis=-1)
    total = n.sum(axis=-2)
    score = sums.reshape(*sums.shape[:-1], ECE_BINS, coarse).sum(axis=-1)
    positives = n[..., 1, :]
    safe = np.maximum(total, 1)
    gap = np.where(total > 0, np.abs(score / safe - positives / safe), 0.0)
    ece: np.ndarray = (total * gap).sum(axis=-1) / np.maximum(total.sum(axis=-1), 1)
    return ece


def _ece_metric(current: Performance, ref: Performance) -> _Metric:
    """ECE, and how often a window of the current size drawn from the reference's
    calibration (its bin-by-label cells, its mean score per bin) shows one this large:
    the small-sample upward bias of ECE is then in the null, not read as drift. Enough
    draws (RESAMPLES) that a p-value can reach ALPHA after the window's correction."""
    ece = float(_ece(current.score_counts, current.score_sums))
    ece_ref = float(_ece(ref.score_counts, ref.score_sums))
    cells = ref.score_counts.ravel().astype(np.float64)
    n = int(current.score_counts.sum())
    totals = ref.score_counts.sum(axis=0)
    means = np.divide(ref.score_sums, totals, out=np.zeros(SCORE_BINS), where=totals > 0)
    rng = np.random.default_rng(0)  # deterministic: the same state gives the same verdict
    pvalue = 1.0
    for draws in RESAMPLES:  # more draws only where the first few say it may be small
        resampled = rng.multinomial(n, cells / cells.sum(), size=draws)
        resampled = resampled.reshape(draws, 2, SCORE_BINS)
        null = _ece(resampled, means * resampled.sum(axis=1))
        pvalue = float((np.sum(null >= ece) + 1) / (draws + 1))
        if pvalue > 0.01:
            break
    return _Metric("ece", ece, ece_ref, pvalue, False, absolute=True)
