"""Fairness across the values of each protected attribute, from slice counts.

Fairness stays absolute (each window on its own, never against the reference): for
each protected attribute, demographic parity difference (selection rates), disparate
impact ratio (the four-fifths rule), equal opportunity difference (true-positive rates)
and equalized odds difference (the larger of the true- and false-positive rate gaps),
each gated by a chi-square test of the groups. Selection rates come from labelled
predictions; where labels are only gathered for some predictions (only flagged ones
reviewed, say), they are biased.

It keeps no state of its own: it reads the counts of :class:`Slices` (slice
performance), of the window alone.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Derived, Finding
from streamwatch.detectors.slices import ACTUAL, PREDICTED, TRUE, N, Slices
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds


class Fairness(Derived):
    """The fairness measures of one window's :class:`Slices`; no reference."""

    name = "fairness"

    def __init__(self, slices: Slices) -> None:
        self.slices = slices

    def evaluate(
        self, model: str, window: WindowBounds, reference: Self | None = None
    ) -> list[Finding]:
        """Each protected attribute's measures in this window (absolute: ``reference``
        is not read)."""
        findings = []
        for dimension in self.slices.settings.protected:
            findings += self._fairness(model, window, dimension)
        return findings

    def _fairness(self, model: str, window: WindowBounds, dimension: str) -> list[Finding]:
        groups = self.slices.groups(dimension)
        if len(groups) < 2:
            return []
        s = self.slices.settings
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
                    detector=self.name,
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
