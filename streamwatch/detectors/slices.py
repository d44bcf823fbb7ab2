"""Subgroup performance, from a window's labelled outcomes per slice.

A slice is a value of a dimension: a segment (``segments`` of the events), a feature
named in the settings, or a protected attribute (numeric features bucketed into the
model's quartiles). Per slice a window keeps its support and, for the positive class,
correct, predicted positive, actual positive and true positive counts: aggregates only,
which merge by adding; the outcome reference pools them like the windows'.

Subgroup performance is judged against the reference (at the window's phase, with a
season), two ways, for accuracy, true-positive rate and false-positive rate:

- the slice against its own reference: worse now than it was, so that a good slice that
  gets worse is caught even while it is still no worse than the rest;
- its gap to the rest of the window against the same gap in the reference (a difference
  in differences of the four proportions), so that a slice that is chronically worse
  than the rest, in the reference too, does not alarm every window, while one that falls
  behind a rest that holds steady does.

Both are one-sided tests on the arcsine scale, where a rate's variance is 1/n whatever
the rate (on the rate itself the normal tails are several times too thin for the few
dozen positives of a small slice). Either alarms when worse by the absolute
``warning`` / ``critical`` margin and significant, Benjamini-Hochberg-adjusted at
``alpha`` over one family per window: every slice, every metric and both comparisons
(42 tests for seven slices). A slice needs ``min_support`` labelled events in the window
and in the reference (and so does its rest, for the gap). Measured (the tests): a slice
7 points behind the rest, in the reference too, never alarms (173 breaching findings in
150 windows against the rest alone); a 5% slice losing 10 points from 8 points ahead,
level, or 7 behind is found in the first window of 10,000 events in 75 to 95% of seeds
and within two in 95 to 100%; at 500 events a window, about one window in a thousand
breaches by chance, and a 40% slice losing 15 points is found in 80 to 97% of windows
(against the rest of the window alone: 65 to 98%, but 22 false breaches in 300 windows
on a chronic gap). Where the whole model gets worse, every slice is worse than its own
reference: those findings then say where, the performance detector that it did; the gap
comparison stays quiet.

Fairness, absolute, reads the same counts (see :mod:`streamwatch.detectors.fairness`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamwatch.config import SliceSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Finding, LabelledBatch
from streamwatch.detectors.concept import classes
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

OTHER = "__other__"
N, CORRECT, PREDICTED, ACTUAL, TRUE = range(5)  # the counts kept per slice


@dataclass(frozen=True, slots=True)
class _Test:
    """One slice's metric, against its reference (``rest`` None) or as a gap to the
    rest against the reference's gap; ``worse`` is signed so that positive is worse."""

    dimension: str
    value: str
    metric: str
    rate: float
    reference: float
    worse: float
    pvalue: float
    se: float
    rest: tuple[float, float] | None = None  # the rest's rate now and in the reference

    @property
    def statistic(self) -> str:
        return self.metric if self.rest is None else f"{self.metric}_gap"


class Slices:
    """Outcome counts per (dimension, value) of one window, or of the reference."""

    name = "slice_performance"

    def __init__(self, settings: SliceSettings, positive: str) -> None:
        self.settings = settings
        self.positive = positive
        self.counts: dict[tuple[str, str], np.ndarray] = {}

    def observe(self, labels: LabelledBatch) -> None:
        """Classifiers' labels with slice values only: a regressor has no classes."""
        joined = labels.joined
        if labels.regression or not joined.slices:
            return
        predicted, actual = classes(joined.prediction, str), classes(joined.label)
        self.update(labels.dimensions, joined.slices, predicted, actual, labels.vocabulary)

    def update(
        self,
        dimensions: Sequence[str],
        values: Iterable[tuple[str | None, ...]],
        predicted: Sequence[str],
        actual: Sequence[str],
        vocabulary: dict[str, set[str]],
    ) -> None:
        """Count labelled outcomes per slice. A dimension's values beyond
        ``max_slices``, in the order first seen, are counted as one: other."""
        rows = list(values)
        if not rows:
            return
        p = np.array(predicted, dtype=np.object_)
        a = np.array(actual, dtype=np.object_)
        right, said, was = p == a, p == self.positive, a == self.positive
        outcome = np.stack([np.ones_like(right), right, said, was, right & said], axis=1)
        outcome = outcome.astype(np.int64)
        # Columns of the rows, a shorter row (stored before a dimension was) padded.
        for dimension, column in zip(dimensions, itertools.zip_longest(*rows), strict=False):
            # Codes in the order values are first seen, as one event at a time would.
            codes_of = {v: i for i, v in enumerate(dict.fromkeys(column))}
            codes = np.fromiter(map(codes_of.__getitem__, column), np.int64, len(column))
            counts = np.stack(
                [
                    np.bincount(codes, weights=outcome[:, k], minlength=len(codes_of))
                    for k in range(outcome.shape[1])
                ],
                axis=1,
            ).astype(np.int64)
            known = vocabulary.setdefault(dimension, set())
            for seen, i in codes_of.items():
                if seen is None:
                    continue
                name = str(seen)
                if name not in known:
                    if len(known) >= self.settings.max_slices:
                        name = OTHER
                    else:
                        known.add(name)
                key = (dimension, name)
                mine = self.counts.get(key)
                self.counts[key] = counts[i].copy() if mine is None else mine + counts[i]

    def merge(self, other: Slices) -> None:
        for key, counts in other.counts.items():
            mine = self.counts.get(key)
            self.counts[key] = counts.copy() if mine is None else mine + counts

    def snapshot(self) -> list[Any]:
        return [[d, v, c.tolist()] for (d, v), c in self.counts.items()]

    def restore(self, state: Sequence[Any]) -> None:
        self.counts = {(str(d), str(v)): np.asarray(c, dtype=np.int64) for d, v, c in state}

    # -- against the reference ---------------------------------------------------

    def evaluate(self, model: str, window: WindowBounds, reference: Slices) -> list[Finding]:
        """Each slice against its reference, and its gap to the rest against the
        reference's gap: one family for the false discovery rate."""
        tests = self._tests(reference)
        qvalues = st.benjamini_hochberg([t.pvalue for t in tests])
        return [
            self._finding(model, window, t, q, reference)
            for t, q in zip(tests, qvalues, strict=True)
        ]

    def _tests(self, reference: Slices) -> list[_Test]:
        support = self.settings.min_support
        tests = []
        for dimension in sorted({d for d, _ in self.counts}):
            total = _total(self.counts, dimension)
            total_ref = _total(reference.counts, dimension)
            for value, c in sorted(self.groups(dimension).items()):
                r = reference.counts.get((dimension, value))
                if r is None or r[N] < support:
                    continue
                rest, rest_ref = total - c, total_ref - r
                gap = rest[N] >= support and rest_ref[N] >= support
                for metric, higher_is_better, now, before, other, other_before in zip(
                    ("accuracy", "true_positive_rate", "false_positive_rate"),
                    (True, True, False),
                    _rates(c),
                    _rates(r),
                    _rates(rest),
                    _rates(rest_ref),
                    strict=True,
                ):
                    own = _against_reference(
                        dimension, value, metric, higher_is_better, now, before
                    )
                    tests += [own] if own else []
                    if gap:
                        rates = (now, before, other, other_before)
                        widened = _gap(dimension, value, metric, higher_is_better, *rates)
                        tests += [widened] if widened else []
        return tests

    def _finding(
        self, model: str, window: WindowBounds, t: _Test, qvalue: float, reference: Slices
    ) -> Finding:
        s = self.settings
        significant = qvalue <= s.alpha
        severity = Severity.of(t.worse, s.warning, s.critical) if significant else Severity.OK
        words = t.metric.replace("_", " ")
        subject = f"{t.dimension}={t.value}"
        details = {"rate": t.rate, "reference": t.reference, "se": t.se}
        if t.rest is None:
            what = f"{words} {t.rate:.1%} against {t.reference:.1%} in the reference"
        else:
            rest, rest_ref = t.rest
            what = (
                f"{words} {t.rate:.1%} against {rest:.1%} for the rest, where the reference "
                f"had {t.reference:.1%} against {rest_ref:.1%} (worse by {t.worse:+.1%} "
                "beyond the reference's gap)"
            )
            details |= {"rest": rest, "rest_reference": rest_ref}
        return Finding(
            model=model,
            detector=self.name,
            subject=subject,
            statistic=t.statistic,
            value=t.worse,
            threshold=severity.threshold(s.warning, s.critical),
            severity=severity,
            n_reference=int(reference.counts[(t.dimension, t.value)][N]),
            n_current=int(self.counts[(t.dimension, t.value)][N]),
            window=window,
            explanation=f"model '{model}': slice {subject} {what}"
            + severity.note(f"q = {qvalue:.2g}")
            + ".",
            details=details | {"p_value": t.pvalue, "q_value": qvalue},
        )

    def groups(self, dimension: str) -> dict[str, np.ndarray]:
        return {
            v: c
            for (d, v), c in self.counts.items()
            if d == dimension and v != OTHER and c[N] >= self.settings.min_support
        }


def bucket_labels(cuts: Sequence[float]) -> list[str]:
    """Names of the buckets that ``cuts`` (ascending) make of a numeric feature."""
    edges = [f"{c:.4g}" for c in cuts]
    inner = [f"{lo}..{hi}" for lo, hi in itertools.pairwise(edges)]
    return [f"<{edges[0]}", *inner, f">={edges[-1]}"]


def quartile_cuts(edges: np.ndarray) -> np.ndarray:
    """Quartile cuts of a model's fine grid (its edges are evenly spaced quantiles)."""
    return np.unique(edges[[len(edges) // 4, len(edges) // 2, 3 * len(edges) // 4]])


Rate = tuple[int, int]  # successes, trials


def _total(counts: dict[tuple[str, str], np.ndarray], dimension: str) -> np.ndarray:
    total = np.zeros(5, dtype=np.int64)
    for (d, _), c in counts.items():
        if d == dimension:
            total += c
    return total


def _rates(c: np.ndarray) -> tuple[Rate, Rate, Rate]:
    """Accuracy, true-positive rate and false-positive rate, as (k, n) in plain ints."""
    n, correct, predicted, actual, true = (int(x) for x in c)
    return (correct, n), (true, actual), (predicted - true, n - actual)


def _upper(z: float) -> float:
    """The standard normal's upper tail (scipy's ``norm.sf``, a hundred times faster
    for one number: a window asks for dozens)."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def _angle(k: int, n: int) -> float:
    """A rate on the variance-stabilising arcsine scale (Anscombe's), where its variance
    is 1/n whatever the rate: the tails of a normal test hold there for the few dozen
    positives of a small slice, where on the rate itself they are several times too thin
    near 0 and 1."""
    return 2 * math.asin(math.sqrt((k + 3 / 8) / (n + 3 / 4)))


def _against_reference(
    dimension: str, value: str, metric: str, higher_is_better: bool, now: Rate, before: Rate
) -> _Test | None:
    """The slice's rate against its own in the reference: a one-sided two-proportion
    test, on the arcsine scale."""
    (k, n), (k_ref, n_ref) = now, before
    if min(n, n_ref) == 0:
        return None
    rate, ref = k / n, k_ref / n_ref
    sign = 1 if higher_is_better else -1  # positive: worse now
    shift = sign * (_angle(k_ref, n_ref) - _angle(k, n))
    pvalue = _upper(shift / math.sqrt(1 / n + 1 / n_ref))
    se = math.sqrt(rate * (1 - rate) / n + ref * (1 - ref) / n_ref)
    return _Test(dimension, value, metric, rate, ref, sign * (ref - rate), pvalue, se)


def _gap(
    dimension: str,
    value: str,
    metric: str,
    higher_is_better: bool,
    now: Rate,
    before: Rate,
    rest: Rate,
    rest_before: Rate,
) -> _Test | None:
    """The slice's shortfall from the rest now, less the reference's: a difference in
    differences, tested on the arcsine scale with the variance of the four proportions."""
    parts = (now, before, rest, rest_before)
    if min(n for _, n in parts) == 0:
        return None
    rate, ref, other, other_ref = (k / n for k, n in parts)
    sign = 1 if higher_is_better else -1
    angles = [_angle(k, n) for k, n in parts]
    widened = sign * ((angles[2] - angles[0]) - (angles[3] - angles[1]))
    pvalue = _upper(widened / math.sqrt(sum(1 / n for _, n in parts)))
    worse = sign * ((other - rate) - (other_ref - ref))
    se = math.sqrt(sum((k / n) * (1 - k / n) / n for k, n in parts))
    return _Test(dimension, value, metric, rate, ref, worse, pvalue, se, (other, other_ref))
