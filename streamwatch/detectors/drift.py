"""Feature drift and prediction drift: one window's columns against the reference's.

Severity comes from an effect size (by default normalised Wasserstein for numeric
columns and total variation, the share of mass moved, for categorical ones; PSI,
Jensen-Shannon or KS if set) and is granted only when the difference is also
significant: the KS test (numeric) or chi-square test (categorical),
Benjamini-Hochberg-adjusted across the columns of the window. So a million-event window
does not alarm on a trivial shift (the effect is too small) and a small window does not
alarm on noise (not significant).

>>> import numpy as np
>>> from streamwatch.batch import Batch, Columns
>>> from streamwatch.config import DriftSettings
>>> from streamwatch.detectors.histogram import Binning
>>> from streamwatch.windows import WindowBounds
>>> rng = np.random.default_rng(7)
>>> def window(shift):
...     x = rng.normal(shift, 1.0, 5000)
...     return Batch(np.zeros(5000), Columns({"amount": x}), Columns())
>>> settings, binning = DriftSettings(), Binning(max_categories=200)
>>> reference = FeatureDrift(settings, binning)
>>> reference.update(window(0.0))
>>> same, moved = FeatureDrift(settings, binning), FeatureDrift(settings, binning)
>>> same.update(window(0.0))
>>> moved.update(window(0.5))
>>> bounds = WindowBounds(1, 0, 60)
>>> [f.severity.value for f in same.evaluate("fraud", bounds, reference)]
['ok']
>>> [f.severity.value for f in moved.evaluate("fraud", bounds, reference)]
['critical']
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np

from streamwatch.batch import Batch, Columns
from streamwatch.config import DriftSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Distribution, Finding
from streamwatch.detectors.cells import Cells
from streamwatch.detectors.histogram import OTHER, Binning, CategoryCounts, NumericHistogram
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

log = logging.getLogger("streamwatch.drift")
RARE = "__rare__"  # categories too sparse to compare one by one, and __other__, pooled
OVERFLOW_MINIMUM_EXPECTED = 20.0
SHOWN_BINS = 24  # equal-width bins of a numeric column's distribution, for reading
SHOWN_CATEGORIES = 12  # the most frequent categories shown; the rest pooled

_LABELS = {
    "wasserstein": "normalised Wasserstein distance",
    "psi": "PSI",
    "jensen_shannon": "Jensen-Shannon distance",
    "ks": "KS statistic",
    "total_variation": "total variation (share of mass moved)",
}


@dataclass(frozen=True, slots=True)
class _Comparison:
    """One column compared: every statistic, the p-value, and a readable change."""

    subject: str
    kind: Literal["numeric", "categorical"]
    statistics: dict[str, float]
    pvalue: float
    n_reference: int
    n_current: int
    change: str


class DriftDetector(ABC):
    """Histograms of every column of one group (features or outputs) of a window."""

    name: ClassVar[str]
    subject_kind: ClassVar[str]

    def __init__(self, settings: DriftSettings, binning: Binning) -> None:
        self.settings = settings
        self.binning = binning
        self.numeric: dict[str, NumericHistogram] = {}
        self.categorical: dict[str, CategoryCounts] = {}

    @abstractmethod
    def _columns(self, batch: Batch) -> Columns:
        """The group of columns this detector watches."""

    def update(self, batch: Batch) -> None:
        columns = self._columns(batch)
        for name, values in columns.numeric.items():
            hist = self.numeric.get(name) or self.numeric.setdefault(name, NumericHistogram())
            hist.update(values, self.binning.edges_for(name, values))
        for name, labels in columns.categorical.items():
            counts = self.categorical.get(name) or self.categorical.setdefault(
                name, CategoryCounts()
            )
            counts.update(labels, name, self.binning)
        for name, wrong in columns.wrong_type.items():
            state = self.numeric.get(name) or self.categorical.get(name)
            if state is not None:
                state.wrong_type += int(wrong.sum())

    def merge(self, other: Self) -> None:
        for name, hist in other.numeric.items():
            self.numeric.setdefault(name, NumericHistogram()).merge(hist)
        for name, counts in other.categorical.items():
            self.categorical.setdefault(name, CategoryCounts()).merge(counts)

    def snapshot(self) -> dict[str, Any]:
        return {
            "numeric": {k: v.snapshot() for k, v in self.numeric.items()},
            "categorical": {k: v.snapshot() for k, v in self.categorical.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.numeric = {k: NumericHistogram.restore(v) for k, v in state["numeric"].items()}
        self.categorical = {k: CategoryCounts.restore(v) for k, v in state["categorical"].items()}

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]:
        """A finding per column with enough events on both sides, but those set to be
        ignored (``COLUMNS__<NAME>__IGNORE``), which are not tested either."""
        minimum, column = self.settings.min_samples, self.settings.column
        compared = [
            self._numeric(name, reference.numeric[name], hist)
            for name, hist in sorted(self.numeric.items())
            if name in reference.numeric
            and min(hist.n, reference.numeric[name].n) >= minimum
            and not column(name).ignore
        ] + [
            self._categorical(name, reference.categorical[name], counts)
            for name, counts in sorted(self.categorical.items())
            if name in reference.categorical
            and min(counts.n, reference.categorical[name].n) >= minimum
            and not column(name).ignore
        ]
        qvalues = st.benjamini_hochberg([c.pvalue for c in compared])
        return [self._finding(model, window, c, q) for c, q in zip(compared, qvalues, strict=True)]

    def distribution(self, name: str, reference: Self) -> Distribution | None:
        """The column ``name`` here and in the reference, for a reader (not a test)."""
        if name in self.numeric and name in reference.numeric:
            edges = self.binning.edges[name]
            return _numeric_shares(
                self.name, name, edges, reference.numeric[name], self.numeric[name]
            )
        if name in self.categorical and name in reference.categorical:
            return _category_shares(
                self.name, name, reference.categorical[name], self.categorical[name]
            )
        return None

    def _numeric(self, name: str, ref: NumericHistogram, cur: NumericHistogram) -> _Comparison:
        edges = self.binning.edges[name]
        d = st.ks_statistic(ref.counts, cur.counts)
        groups = st.coarse_groups(ref.counts, self.settings.bins)
        coarse_ref = st.regroup(ref.counts, groups, self.settings.bins)
        coarse_cur = st.regroup(cur.counts, groups, self.settings.bins)
        # Normalise by the reference's spread, winsorised like the distance itself; a
        # constant reference borrows the current window's spread.
        scale = st.binned_std(ref.counts, edges) or st.binned_std(cur.counts, edges) or 1.0
        statistics = {
            "wasserstein": st.wasserstein(ref.counts, cur.counts, edges) / scale,
            "psi": st.psi(coarse_ref, coarse_cur),
            "jensen_shannon": st.js_distance(coarse_ref, coarse_cur),
            "ks": d,
            "mean_reference": ref.mean,
            "mean_current": cur.mean,
        }
        shift = (cur.mean - ref.mean) / scale
        change = f"mean {ref.mean:.4g} → {cur.mean:.4g} ({shift:+.2f} sd)"
        pvalue = st.ks_pvalue(d, ref.n, cur.n)
        return _Comparison(name, "numeric", statistics, pvalue, ref.n, cur.n, change)

    def _categorical(self, name: str, ref: CategoryCounts, cur: CategoryCounts) -> _Comparison:
        # Every category of either side is compared as itself, sparse ones pooled by
        # their total: which column a count lands in must not depend on the side it
        # came from. A bucket of "categories the reference lacks" would: under no
        # change it holds the mass the reference missed by chance (7% for 300 Zipf
        # categories and 1,000 reference events) against none, a sure alarm.
        names = sorted(ref.counts.keys() | cur.counts.keys())
        ref_all = np.array([ref.counts[k] for k in names], dtype=np.float64)
        cur_all = np.array([cur.counts[k] for k in names], dtype=np.float64)
        # Past the tracked categories, which ones are tracked was decided by the
        # reference's early events: the rare ones that made it are over-counted there
        # and __other__ is under-counted by as much. So __other__ is always pooled
        # with the sparse categories, where the two cancel, and a category is compared
        # by itself only when expected 20 times or more (so that whether it was
        # tracked hardly depended on chance). Otherwise Cochran's rule: 5 or more.
        overflowed = OTHER in ref.counts or OTHER in cur.counts
        minimum = OVERFLOW_MINIMUM_EXPECTED if overflowed else 5.0
        other = np.array([k == OTHER for k in names], dtype=np.bool_)
        ref_counts, cur_counts, kept = st.pool_sparse(ref_all, cur_all, minimum, other)
        shown = [k for k, keep in zip(names, kept.tolist(), strict=True) if keep]
        if not kept.all():
            shown.append(RARE)
        unseen = sum(v for k, v in cur.counts.items() if k not in ref.counts)
        statistics = {
            "total_variation": st.total_variation(ref_counts, cur_counts),
            "psi": st.psi(ref_counts, cur_counts),
            "jensen_shannon": st.js_distance(ref_counts, cur_counts),
            "unseen_share": unseen / cur.n,
        }
        change = _largest_move(shown, ref_counts, cur_counts)
        pvalue = st.chi_square_pvalue(ref_counts, cur_counts)
        return _Comparison(name, "categorical", statistics, pvalue, ref.n, cur.n, change)

    def _finding(self, model: str, window: WindowBounds, c: _Comparison, qvalue: float) -> Finding:
        s = self.settings
        statistic = s.statistic(c.kind, c.subject)
        own = s.column(c.subject).statistic
        if own is not None and own != statistic:
            log.warning(
                "a column's statistic is not one of its kind: the detector's is used",
                extra={"model": model, "column": c.subject, "kind": c.kind, "statistic": own},
            )
        warning, critical = s.thresholds(c.kind, c.subject)
        value = c.statistics[statistic]
        significant = qvalue <= s.alpha
        severity = Severity.of(value, warning, critical) if significant else Severity.OK
        threshold = severity.threshold(warning, critical)
        label = _LABELS[statistic]
        if severity is Severity.OK:
            why = "below" if value < warning else f"not significant ({_q(qvalue)}) at"
            verdict = f"no drift: {label} {value:.3f}, {why} the warning {warning:g}"
        else:
            verdict = (
                f"{severity.value} drift: {label} {value:.3f} ≥ {threshold:g}, "
                f"significant ({_q(qvalue)})"
            )
        explanation = (
            f"{self.subject_kind} '{c.subject}' of model '{model}': {verdict}; {c.change}; "
            f"{c.n_current:,} events against {c.n_reference:,} in the reference."
        )
        return Finding(
            model=model,
            detector=self.name,
            subject=c.subject,
            statistic=statistic,
            value=value,
            threshold=threshold,
            severity=severity,
            n_reference=c.n_reference,
            n_current=c.n_current,
            window=window,
            explanation=explanation,
            details={**c.statistics, "p_value": c.pvalue, "q_value": qvalue},
        )


def _q(qvalue: float) -> str:
    # Large windows push p-values below the smallest double; say so rather than "0".
    return "q < 1e-300" if qvalue < 1e-300 else f"q = {qvalue:.2g}"


def _largest_move(names: list[str], ref: st.Counts, cur: st.Counts) -> str:
    p, q = ref / ref.sum(), cur / cur.sum()
    i = int(np.argmax(np.abs(q - p)))
    name = {OTHER: "untracked categories", RARE: "rare or untracked categories"}.get(
        names[i], f"'{names[i]}'"
    )
    return f"largest change {name} {p[i]:.1%} → {q[i]:.1%}"


def _numeric_shares(
    detector: str, name: str, edges: np.ndarray, ref: NumericHistogram, cur: NumericHistogram
) -> Distribution | None:
    """The fine grid's counts regrouped into equal-width bins between its outer edges
    (the open bins beyond them join the first and the last)."""
    if not (ref.counts.size and cur.counts.size and ref.n and cur.n):
        return None
    lo, hi = float(edges[0]), float(edges[-1])
    if not hi > lo:
        return None
    centres = np.concatenate([[lo], (edges[:-1] + edges[1:]) / 2, [hi]])
    bounds = np.linspace(lo, hi, SHOWN_BINS + 1)
    index = np.clip(np.searchsorted(bounds, centres, side="right") - 1, 0, SHOWN_BINS - 1)
    shares = [
        np.bincount(index, weights=h.counts, minlength=SHOWN_BINS) / h.counts.sum()
        for h in (ref, cur)
    ]
    labels = tuple(f"{a:.4g}" for a in bounds[:-1])
    ref_shares, cur_shares = (tuple(s.tolist()) for s in shares)
    return Distribution(detector, name, "numeric", labels, ref_shares, cur_shares)


def _category_shares(
    detector: str, name: str, ref: CategoryCounts, cur: CategoryCounts
) -> Distribution | None:
    if not (ref.n and cur.n):
        return None
    total = ref.counts + cur.counts
    shown = [k for k, _ in total.most_common(SHOWN_CATEGORIES)]
    rest = [k for k in total if k not in shown]

    def shares(counts: CategoryCounts) -> tuple[float, ...]:
        values = [counts.counts[k] for k in shown]
        if rest:
            values.append(sum(counts.counts[k] for k in rest))
        return tuple(v / counts.n for v in values)

    labels = tuple(shown) + (("other categories",) if rest else ())
    return Distribution(detector, name, "categorical", labels, shares(ref), shares(cur))


class FeatureDrift(DriftDetector):
    """Drift of every feature column against the reference."""

    name = "feature_drift"
    subject_kind = "feature"

    def _columns(self, batch: Batch) -> Columns:
        return batch.features


class PredictionDrift(DriftDetector):
    """Drift of the model's outputs: score, predicted class or value, class probabilities.
    A classifier's probabilities are kept too, as :class:`Cells` by predicted class: what
    performance estimation and maximum likelihood label shift read of a window."""

    name = "prediction_drift"
    subject_kind = "output"

    def __init__(self, settings: DriftSettings, binning: Binning) -> None:
        super().__init__(settings, binning)
        self.cells = Cells(settings.max_categories)

    def _columns(self, batch: Batch) -> Columns:
        return batch.outputs

    def update(self, batch: Batch) -> None:
        super().update(batch)
        outputs = batch.outputs
        predicted = outputs.categorical.get("prediction")
        if predicted is None:
            predicted = np.full(batch.n, None, dtype=np.object_)
        self.cells.add(predicted, outputs.numeric)

    def merge(self, other: Self) -> None:
        super().merge(other)
        self.cells.merge(other.cells)

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "cells": self.cells.snapshot()}

    def restore(self, state: Mapping[str, Any]) -> None:
        super().restore(state)
        # A checkpoint from before the probabilities were kept has none.
        most = self.settings.max_categories
        self.cells = Cells.restore(state["cells"], most) if "cells" in state else Cells(most)
