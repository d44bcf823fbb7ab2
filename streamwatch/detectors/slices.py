"""Subgroup performance and fairness, from a window's labelled outcomes per slice.

A slice is a value of a dimension: a segment (``segments`` of the events) or a feature
named in the settings (numeric ones bucketed into the model's quartiles). Per slice the
window keeps its support and, for the positive class, correct, predicted positive,
actual positive and true positive counts: aggregates only.

A slice alarms when its accuracy or true-positive rate is lower, or its false-positive
rate higher, than the rest of the window's by an absolute margin, and significantly so
(one-sided two-proportion test against the rest), Benjamini-Hochberg-adjusted across all
slices and metrics, with a minimum support. For each protected attribute: demographic
parity difference (selection rates), disparate impact ratio (the four-fifths rule),
equal opportunity difference (true-positive rates) and equalized odds difference (the
larger of the true- and false-positive rate gaps), each gated by a chi-square test of
the groups. Selection rates come from labelled predictions; where labels are only
gathered for some predictions (only flagged ones reviewed, say), they are biased.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamwatch.config import SliceSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Finding
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

OTHER = "__other__"
N, CORRECT, PREDICTED, ACTUAL, TRUE = range(5)  # the counts kept per slice


@dataclass(frozen=True, slots=True)
class _Gap:
    dimension: str
    value: str
    metric: str
    rate: float
    rest: float
    pvalue: float


class Slices:
    """Outcome counts per (dimension, value) of one window."""

    def __init__(self, settings: SliceSettings, positive: str) -> None:
        self.settings = settings
        self.positive = positive
        self.counts: dict[tuple[str, str], np.ndarray] = {}

    def update(
        self,
        dimensions: Sequence[str],
        values: Iterable[tuple[str | None, ...]],
        predicted: Sequence[str],
        actual: Sequence[str],
        vocabulary: dict[str, set[str]],
    ) -> None:
        positive, limit = self.positive, self.settings.max_slices
        for row, p, a in zip(values, predicted, actual, strict=True):
            outcome = np.array([1, p == a, p == positive, a == positive, p == a == positive])
            for dimension, seen in zip(dimensions, row, strict=False):
                if seen is None:
                    continue
                known = vocabulary.setdefault(dimension, set())
                value = seen
                if seen not in known:
                    if len(known) >= limit:
                        value = OTHER
                    else:
                        known.add(seen)
                key = (dimension, value)
                counts = self.counts.get(key)
                if counts is None:
                    self.counts[key] = outcome.astype(np.int64)
                else:
                    counts += outcome

    def merge(self, other: Slices) -> None:
        for key, counts in other.counts.items():
            mine = self.counts.get(key)
            self.counts[key] = counts.copy() if mine is None else mine + counts

    def snapshot(self) -> list[Any]:
        return [[d, v, c.tolist()] for (d, v), c in self.counts.items()]

    def restore(self, state: Sequence[Any]) -> None:
        self.counts = {(str(d), str(v)): np.asarray(c, dtype=np.int64) for d, v, c in state}

    def evaluate(self, model: str, window: WindowBounds) -> list[Finding]:
        gaps = self._gaps()
        qvalues = st.benjamini_hochberg([g.pvalue for g in gaps])
        findings = [
            self._gap_finding(model, window, g, q) for g, q in zip(gaps, qvalues, strict=True)
        ]
        for dimension in self.settings.protected:
            findings += self._fairness(model, window, dimension)
        return findings

    def _groups(self, dimension: str) -> dict[str, np.ndarray]:
        return {
            v: c
            for (d, v), c in self.counts.items()
            if d == dimension and v != OTHER and c[N] >= self.settings.min_support
        }

    def _gaps(self) -> list[_Gap]:
        gaps = []
        for dimension in sorted({d for d, _ in self.counts}):
            total = sum(c for (d, _), c in self.counts.items() if d == dimension)
            for value, c in sorted(self._groups(dimension).items()):
                rest = total - c
                if rest[N] < self.settings.min_support:
                    continue
                negatives, rest_negatives = c[N] - c[ACTUAL], rest[N] - rest[ACTUAL]
                for metric, k, n, k_rest, n_rest, higher_is_better in (
                    ("accuracy", c[CORRECT], c[N], rest[CORRECT], rest[N], True),
                    ("true_positive_rate", c[TRUE], c[ACTUAL], rest[TRUE], rest[ACTUAL], True),
                    (
                        "false_positive_rate",
                        c[PREDICTED] - c[TRUE],
                        negatives,
                        rest[PREDICTED] - rest[TRUE],
                        rest_negatives,
                        False,
                    ),
                ):
                    if min(n, n_rest) == 0:
                        continue
                    pvalue = (
                        st.higher_rate_pvalue(k_rest, n_rest, k, n)  # the slice's is lower
                        if higher_is_better
                        else st.higher_rate_pvalue(k, n, k_rest, n_rest)
                    )
                    gaps.append(_Gap(dimension, value, metric, k / n, k_rest / n_rest, pvalue))
        return gaps

    def _gap_finding(self, model: str, window: WindowBounds, g: _Gap, qvalue: float) -> Finding:
        s = self.settings
        worse = g.rest - g.rate if g.metric != "false_positive_rate" else g.rate - g.rest
        severity = Severity.of(worse, s.warning, s.critical) if qvalue <= s.alpha else Severity.OK
        words = g.metric.replace("_", " ")
        return Finding(
            model=model,
            detector="slice_performance",
            subject=f"{g.dimension}={g.value}",
            statistic=g.metric,
            value=worse,
            threshold=severity.threshold(s.warning, s.critical),
            severity=severity,
            n_reference=0,
            n_current=int(self.counts[(g.dimension, g.value)][N]),
            window=window,
            explanation=f"model '{model}': slice {g.dimension}={g.value} {words} "
            f"{g.rate:.1%} against {g.rest:.1%} for the rest"
            + severity.note(f"q = {qvalue:.2g}")
            + ".",
            details={"rate": g.rate, "rest": g.rest, "q_value": qvalue},
        )

    def _fairness(self, model: str, window: WindowBounds, dimension: str) -> list[Finding]:
        groups = self._groups(dimension)
        if len(groups) < 2:
            return []
        s = self.settings
        table = np.array(list(groups.values()), dtype=np.float64)
        names = list(groups)
        selection = table[:, PREDICTED] / table[:, N]
        selected = np.vstack([table[:, PREDICTED], table[:, N] - table[:, PREDICTED]])
        p_selection = st.chi_square_pvalue(selected[0], selected[1])
        positives, negatives = table[:, ACTUAL], table[:, N] - table[:, ACTUAL]
        tpr = np.divide(
            table[:, TRUE], positives, out=np.full(len(names), np.nan), where=positives > 0
        )
        fp = table[:, PREDICTED] - table[:, TRUE]
        fpr = np.divide(fp, negatives, out=np.full(len(names), np.nan), where=negatives > 0)
        p_tpr = st.chi_square_pvalue(table[:, TRUE], positives - table[:, TRUE])
        p_fpr = st.chi_square_pvalue(fp, negatives - fp)

        def spread(rates: np.ndarray) -> float:
            known = rates[np.isfinite(rates)]
            return float(known.max() - known.min()) if known.size >= 2 else 0.0

        impact = float(selection.min() / selection.max()) if selection.max() > 0 else 1.0
        eo, fpr_gap = spread(tpr), spread(fpr)
        measures = [
            (
                "demographic_parity_difference",
                spread(selection),
                p_selection,
                (s.parity_warning, s.parity_critical),
            ),
            # Read as a shortfall from parity: the four-fifths rule warns below 0.8.
            (
                "disparate_impact_ratio",
                1 - impact,
                p_selection,
                (1 - s.impact_warning, 1 - s.impact_critical),
            ),
            ("equal_opportunity_difference", eo, p_tpr, (s.parity_warning, s.parity_critical)),
            (
                "equalized_odds_difference",
                max(eo, fpr_gap),
                min(1.0, 2 * min(p_tpr, p_fpr)),
                (s.parity_warning, s.parity_critical),
            ),
        ]
        rates = ", ".join(f"{n} {r:.1%}" for n, r in zip(names, selection, strict=True))
        findings = []
        for statistic, value, pvalue, (warning, critical) in measures:
            severity = Severity.of(value, warning, critical) if pvalue <= s.alpha else Severity.OK
            shown = impact if statistic == "disparate_impact_ratio" else value
            findings.append(
                Finding(
                    model=model,
                    detector="fairness",
                    subject=dimension,
                    statistic=statistic,
                    value=value,
                    threshold=severity.threshold(warning, critical),
                    severity=severity,
                    n_reference=0,
                    n_current=int(table[:, N].sum()),
                    window=window,
                    explanation=f"model '{model}': {statistic.replace('_', ' ')} across "
                    f"{dimension} {shown:.3f} (p = {pvalue:.2g}); selection rates {rates}"
                    + severity.note()
                    + ".",
                    details={"value": shown, "p_value": pvalue},
                )
            )
        return findings


def bucket_labels(cuts: Sequence[float]) -> list[str]:
    """Names of the buckets that ``cuts`` (ascending) make of a numeric feature."""
    edges = [f"{c:.4g}" for c in cuts]
    inner = [f"{lo}..{hi}" for lo, hi in itertools.pairwise(edges)]
    return [f"<{edges[0]}", *inner, f">={edges[-1]}"]


def quartile_cuts(edges: np.ndarray) -> np.ndarray:
    """Quartile cuts of a model's fine grid (its edges are evenly spaced quantiles)."""
    return np.unique(edges[[len(edges) // 4, len(edges) // 2, 3 * len(edges) // 4]])
