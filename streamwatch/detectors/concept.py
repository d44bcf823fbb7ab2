"""Concept drift: a window's labelled errors against the errors the reference makes on
the same kind of predictions.

The default (``detector="reference"``) keeps, per window, the errors by calibration
cell: for a classifier, the predicted class and, where the model sends scores, the score
on 100 equal-width bins; for a regressor, the predicted value on a geometric grid (8
bins per doubling), with the absolute error's sum and sum of squares. At evaluation the
reference's consecutive fine bins are grouped, per predicted class, into cells of 100
labels or more. A window's expected errors are the sum over
its events of their cell's reference error rate; the excess error rate, (observed -
expected) / n, is tested one-sidedly with the variance of the window's errors under the
reference's cells (binomial for a classifier) plus that of the reference cells'
estimates. It warns or is critical above ``warning`` / ``critical`` (points of error
rate; for a regressor, a share of the expected mean absolute error) when significant at
``alpha``.

Why this is quiet on a real stream: concept drift is a change in p(y|x), and a model's
errors given what it predicted stand in for p(y|x) without keeping any x. When the mix of
traffic moves over the day (harder cases at night, say), the scores move with it and so
do the expected errors: an error rate cycling between 20% and 29% through the covariates
leaves no excess (no breach in 168 hourly windows of 200 to 20,000 labels; the excess's
z-score has a standard deviation of 0.92 there). So the whole reference is the yardstick,
not its phase: the cells follow the cycle, and a night phase's few hundred labels would
double the test's variance. Window sizes varying a hundredfold are in the test's
variance, the window's own. A real change of p(y|x), a fifth of the labels flipping, is
an excess of 0.08 to 0.12 points: found in the first window whose labels have come from
about 600 labels on, in about half the windows of 200 to 300 labels. A covariate shift
that only moves traffic into cells where the model errs more is not concept drift: the
performance detector and feature drift report it. Not in the cells, and so read as
drift when beyond the margins: a cycle of p(y|x) itself (labels noisier at night for the
same scores). The state is counts and sums per cell: it merges exactly and is
snapshotted as plain data.

The river detectors remain as options (``adwin``, ``page_hinkley``, ``ddm``, ``eddm``):
every joined label's error fed in arrival order to one detector per model, a change
reported with the window its label's prediction belonged to. They know nothing of the
reference and are not seasonal-aware: on a stream whose error rate cycles between 0.20
and 0.29 over the day, ADWIN alarms in 19 to 26 of 168 hourly windows (the stream of the
tests), where the default is silent.
Their state has no merge (one detector per model); it is written as plain data, field by
field (river_state.py). DDM and EDDM read classifiers' misses only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from streamwatch.config import ConceptDriftSettings
from streamwatch.detectors import river_state
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Finding, LabelledBatch
from streamwatch.detectors.performance import class_label
from streamwatch.errors import StateError
from streamwatch.join import Joined
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

SCORE_BINS = 100
GRID = 8  # regression cells per doubling of the predicted value's magnitude
MIN_CELL = 100  # reference labels per cell
PSEUDO = 2.0  # a cell's error variance is shrunk towards the reference's by this many labels
N, SUM, SQUARES = range(3)


class Residuals:
    """Errors per (predicted class, fine bin) of one window, or of the reference.

    A calibrated classifier, then a fifth of its labels flipped:

    >>> from streamwatch.config import ConceptDriftSettings
    >>> rng = np.random.default_rng(0)
    >>> def labelled(n: int, flip: float) -> Joined:
    ...     score = rng.uniform(0, 1, n)
    ...     label = (rng.random(n) < score) ^ (rng.random(n) < flip)
    ...     predicted = (score > 0.5).astype(int).astype(object)
    ...     zeros = np.zeros(n, dtype=np.int64)
    ...     return Joined(zeros, predicted, score, label.astype(int).astype(object), zeros)
    >>> reference, window = Residuals(ConceptDriftSettings()), Residuals(ConceptDriftSettings())
    >>> reference.update(labelled(20_000, 0.0), regression=False)
    >>> window.update(labelled(2_000, 0.2), regression=False)
    >>> (finding,) = window.evaluate("m", WindowBounds(1, 0.0, 60.0), reference)
    >>> finding.severity.value, round(finding.value, 3)
    ('warning', 0.095)
    """

    name = "concept_drift"

    def __init__(self, settings: ConceptDriftSettings) -> None:
        self.settings = settings
        self.regression = False
        self.cells: dict[tuple[str, int], np.ndarray] = {}  # -> [n, Σ error, Σ error²]

    @property
    def n(self) -> int:
        return int(sum(c[N] for c in self.cells.values()))

    def observe(self, labels: LabelledBatch) -> None:
        self.update(labels.joined, labels.regression)

    def update(self, joined: Joined, regression: bool) -> None:
        if joined.n == 0:
            return
        if regression:
            self.regression = True
            yhat, y = _numbers(joined.prediction), _numbers(joined.label)
            # Errors beyond 1e50 are input errors; their squares would overflow.
            ok = np.isfinite(yhat) & np.isfinite(y) & (np.abs(yhat - y) < 1e50)
            error = np.abs(yhat[ok] - y[ok])
            magnitude = np.floor(GRID * np.log2(1 + np.minimum(np.abs(yhat[ok]), 1e300)))
            fine = (np.sign(yhat[ok]) * magnitude).astype(np.int64)
            group = np.full(error.size, "", dtype=np.object_)
        else:
            group = np.array(classes(joined.prediction, str), dtype=np.object_)
            actual = np.array(classes(joined.label), dtype=np.object_)
            error = (group != actual).astype(np.float64)
            scored = np.isfinite(joined.score)
            score = np.clip(np.where(scored, joined.score, 0.0), 0.0, 1.0)
            bins = np.minimum((score * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
            fine = np.where(scored, bins, -1)
        self._add(group, fine, error)

    def _add(self, group: np.ndarray, fine: np.ndarray, error: np.ndarray) -> None:
        if error.size == 0:
            return
        codes: dict[str, int] = {}
        named = np.fromiter((codes.setdefault(g, len(codes)) for g in group), np.int64, group.size)
        names = list(codes)
        keys, inverse = np.unique(np.stack([named, fine]), axis=1, return_inverse=True)
        inverse = inverse.ravel()
        sums = np.stack(
            [
                np.bincount(inverse, minlength=keys.shape[1]).astype(np.float64),
                np.bincount(inverse, weights=error, minlength=keys.shape[1]),
                np.bincount(inverse, weights=error * error, minlength=keys.shape[1]),
            ],
            axis=1,
        )
        for (g, f), row in zip(keys.T.tolist(), sums, strict=True):
            key = (str(names[g]), int(f))
            cell = self.cells.get(key)
            self.cells[key] = row if cell is None else cell + row

    def merge(self, other: Residuals) -> None:
        self.regression = self.regression or other.regression
        for key, row in other.cells.items():
            cell = self.cells.get(key)
            self.cells[key] = row.copy() if cell is None else cell + row

    def snapshot(self) -> dict[str, Any]:
        return {
            "regression": self.regression,
            "cells": [[g, f, *row.tolist()] for (g, f), row in sorted(self.cells.items())],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.regression = bool(state["regression"])
        self.cells = {
            (str(g), int(f)): np.array(row, dtype=np.float64) for g, f, *row in state["cells"]
        }

    def evaluate(self, model: str, window: WindowBounds, reference: Residuals) -> list[Finding]:
        s = self.settings
        n = self.n
        if min(n, reference.n) < s.min_labels:
            return []
        observed, expected, variance, cells = _Calibration.of(reference.cells).expect(self.cells)
        pvalue = st.one_sided(observed - expected, math.sqrt(variance))
        excess = (observed - expected) / n
        if self.regression:
            # A share of the expected mean absolute error: errors have the target's unit.
            value = excess / (expected / n) if expected > 0 else (math.inf if excess > 0 else 0.0)
        else:
            value = excess
        significant = pvalue <= s.alpha
        severity = Severity.of(value, s.warning, s.critical) if significant else Severity.OK
        if self.regression:
            what = (
                f"mean absolute error {observed / n:.4g} where the reference's errors on the "
                f"same predicted values give {expected / n:.4g} ({value:+.1%})"
            )
        else:
            what = (
                f"{observed / n:.1%} of predictions wrong where the reference's error rates "
                f"for the same predictions give {expected / n:.1%} ({100 * value:+.1f} points)"
            )
        finding = Finding(
            model=model,
            detector=self.name,
            subject="errors",
            statistic="excess_abs_error" if self.regression else "excess_error_rate",
            value=float(value),
            threshold=severity.threshold(s.warning, s.critical),
            severity=severity,
            n_reference=reference.n,
            n_current=n,
            window=window,
            explanation=f"model '{model}': {what}, {n:,} labels"
            + severity.note(f"p = {pvalue:.2g}")
            + ".",
            details={
                "observed": observed / n,
                "expected": expected / n,
                "se": math.sqrt(variance) / n,
                "p_value": pvalue,
                "cells": cells,
            },
        )
        return [finding]


@dataclass(frozen=True, slots=True)
class _Calibration:
    """The reference's cells: for each predicted class its fine bins (sorted) and the
    cell each belongs to; per cell its labels, mean error and error variance. The last
    cell is the whole reference, for classes it never predicted."""

    lookup: dict[str, tuple[np.ndarray, np.ndarray]]
    count: np.ndarray
    mean: np.ndarray
    variance: np.ndarray

    @classmethod
    def of(cls, cells: Mapping[tuple[str, int], np.ndarray]) -> _Calibration:
        lookup: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows: list[np.ndarray] = []
        for group in sorted({g for g, _ in cells}):
            fine = np.array(sorted(f for g, f in cells if g == group), dtype=np.int64)
            table = np.array([cells[(group, f)] for f in fine.tolist()])
            ids = _partition(table[:, N])
            lookup[group] = (fine, ids + len(rows))
            rows += [table[ids == i].sum(axis=0) for i in range(int(ids.max()) + 1)]
        whole = np.sum(list(cells.values()), axis=0)
        rows.append(whole)
        count, total, squares = np.array(rows).T
        mean = total / count
        spread = np.maximum(squares / count - mean * mean, 0.0)
        # A cell of 100 labels without an error has a variance of 0, not the truth:
        # shrink every cell's towards the whole reference's.
        variance = (count * spread + PSEUDO * spread[-1]) / (count + PSEUDO)
        return cls(lookup, count, mean, variance)

    def expect(
        self, cells: Mapping[tuple[str, int], np.ndarray]
    ) -> tuple[float, float, float, int]:
        """Observed and expected errors of a window's cells, the variance of their
        difference under the reference, and how many cells the window fell in."""
        n = np.zeros(len(self.count))
        observed = 0.0
        for (group, f), row in cells.items():
            found = self.lookup.get(group)
            if found is None:
                cell = len(self.count) - 1
            else:
                fine, ids = found
                i = int(np.searchsorted(fine, f))
                if i == len(fine) or (i > 0 and f - fine[i - 1] < fine[i] - f):
                    i -= 1  # the nearest bin the reference has
                cell = int(ids[i])
            n[cell] += row[N]
            observed += float(row[SUM])
        expected = float(n @ self.mean)
        variance = float(n @ self.variance + (n * n / self.count) @ self.variance)
        return observed, expected, variance, int((n > 0).sum())


def _partition(counts: np.ndarray) -> np.ndarray:
    """Consecutive fine bins grouped into cells of ``MIN_CELL`` labels or more (but
    one, where a class has fewer). No coarser: a wide cell's error rate moves with where
    in it a window's predictions fall (the tail cells of a regressor's, at night)."""
    ids = np.zeros(len(counts), dtype=np.int64)
    cell, mass = 0, 0.0
    for i, c in enumerate(counts.tolist()):
        ids[i] = cell
        mass += c
        if mass >= MIN_CELL:
            cell, mass = cell + 1, 0.0
    last = int(ids.max())
    if last > 0 and counts[ids == last].sum() < MIN_CELL:
        ids[ids == last] = last - 1  # too small a remainder joins its neighbour
    return ids


def classes(values: np.ndarray, name: Callable[[object], str] = class_label) -> list[str]:
    """Labels or predictions as the classes they name (``class_label``), each distinct
    value named once: a window's labels are a handful of values repeated."""
    named: dict[object, str] = {}
    out = []
    for v in values.tolist():
        c = named.get(v)
        if c is None:
            c = named[v] = name(v)
        out.append(c)
    return out


def _numbers(values: np.ndarray) -> np.ndarray:
    return np.array(
        [v if isinstance(v, int | float) else np.nan for v in values.tolist()], dtype=np.float64
    )


class Sequential:
    """A river change detector on one model's stream of errors (not seasonal-aware)."""

    name = "concept_drift"

    def __init__(self, settings: ConceptDriftSettings) -> None:
        if settings.detector not in river_state.KINDS:
            raise ValueError(f"{settings.detector!r} is not a river change detector")
        self.settings = settings
        self.detector: Any = river_state.KINDS[settings.detector]()  # river is untyped
        self.changes: dict[int, int] = {}  # window index -> changes found in its labels

    def observe(self, labels: LabelledBatch) -> None:
        self.update(labels.joined, labels.regression)

    def update(self, joined: Joined, regression: bool) -> None:
        """Feed errors in arrival order; remember in which windows changes were found.
        DDM and EDDM take misses (0 or 1) only: a regressor's errors go to ADWIN or
        Page-Hinkley, or nowhere."""
        if regression and self.settings.detector in {"ddm", "eddm"}:
            return
        if regression:
            yhat, y = _numbers(joined.prediction), _numbers(joined.label)
            errors: list[float | int | None] = [
                None if math.isnan(e) else e for e in np.abs(yhat - y).tolist()
            ]
        else:
            errors = [
                int(str(p) != class_label(y))
                for p, y in zip(joined.prediction.tolist(), joined.label.tolist(), strict=True)
            ]
        detector = self.detector
        for window, error in zip(joined.window.tolist(), errors, strict=True):
            if error is None:
                continue
            detector.update(error)
            if detector.drift_detected:
                self.changes[window] = self.changes.get(window, 0) + 1

    def evaluate(self, model: str, window: WindowBounds) -> list[Finding]:
        # Changes found among late labels of windows judged already: nowhere to report.
        for earlier in [w for w in self.changes if w < window.index]:
            del self.changes[earlier]
        found = self.changes.pop(window.index, 0)
        severity = Severity.WARNING if found else Severity.OK
        what = (
            f"{self.settings.detector} found {found} change(s) in the error rate among this "
            "window's labels"
            if found
            else f"{self.settings.detector} found no change in the error rate"
        )
        return [
            Finding(
                model=model,
                detector=self.name,
                subject="errors",
                statistic=self.settings.detector,
                value=float(found),
                threshold=1.0,
                severity=severity,
                n_reference=0,
                n_current=0,
                window=window,
                explanation=f"model '{model}': {what}.",
            )
        ]

    def snapshot(self) -> dict[str, Any]:
        # Data only: this state crosses the changelog topic, and whoever can write there
        # must not be able to make the daemon run anything.
        return {
            "detector": river_state.snapshot(self.settings.detector, self.detector),
            "changes": [[w, c] for w, c in self.changes.items()],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Refuses (StateError) what :meth:`snapshot` does not write, e.g. the pickled
        detectors of streamwatch before river_state."""
        try:
            changes = msgspec.convert(state.get("changes"), list[tuple[int, int]], strict=True)
        except msgspec.ValidationError as exc:
            raise StateError(f"concept drift's window changes are malformed ({exc})") from None
        self.detector = river_state.restore(self.settings.detector, state.get("detector"))
        self.changes = dict(changes)
