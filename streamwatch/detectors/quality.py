"""Data quality: missing values, values of the wrong type (text in a numeric feature, a
number among categories), values out of the reference's range, unseen categories, and
schema changes (a feature appears or disappears), per feature and window.

It reads the aggregates feature drift keeps (missing counts, the fine grid's open-ended
bins, category counts), so nothing is counted twice. A rate is compared with the
reference's by a one-sided test, Fisher's exact (the pooled z-test claims significance
where few are expected: see :func:`statistics.higher_rate_pvalue`),
Benjamini-Hochberg-adjusted across every check of the window. A significant rise warns
from ``warning`` (1 point) up and is critical from ``critical`` (20 points): 3% of values
of the wrong type where the reference had none is a warning at a few thousand events.

"Out of range" means below or above the fine grid, whose outer edges are the
reference sample's 1/128 and 127/128 quantiles; the reference's own share there (about
1.6%) is the baseline. "Unseen" means a category the reference does not have; even with
no change, a category rare enough may be missing from the reference and turn up later,
so the baseline is the reference's share of events in categories it saw once
(Good-Turing's estimate of the share of events whose category a sample has not seen).

A feature is present when it comes with values of either kind: one whose values now
come with the wrong type is reported as such, not as disappeared.

:class:`DataQuality` keeps no state of its own: it reads feature drift's (so it runs
only where feature drift does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from streamwatch.config import DataQualitySettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Derived, Finding
from streamwatch.detectors.drift import FeatureDrift
from streamwatch.detectors.histogram import OTHER, CategoryCounts, NumericHistogram
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

NAME = "data_quality"
MIN_EXPECTED_ABSENT = 20  # P(none | 20 expected) is e^-20


@dataclass(frozen=True, slots=True)
class _Rate:
    subject: str
    check: str  # missing | wrong_type | out_of_range | unseen
    current: int
    n: int
    reference: int
    n_reference: int
    # The test counts the reference as this share of its events: less than all where
    # its rate is an estimate noisier than a share of them (unseen categories).
    worth: float = 1.0

    @property
    def rise(self) -> float:
        return self.current / self.n - self.reference / self.n_reference

    @property
    def pvalue(self) -> float:
        k_ref, n_ref = round(self.reference * self.worth), round(self.n_reference * self.worth)
        return st.higher_rate_pvalue(self.current, self.n, k_ref, max(n_ref, 1))


class DataQuality(Derived):
    """The data quality of one window's features, read from its feature drift state."""

    name = NAME

    def __init__(self, settings: DataQualitySettings, features: FeatureDrift) -> None:
        self.settings = settings
        self.features = features

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]:
        return evaluate(model, window, self.features, reference.features, self.settings)


def evaluate(
    model: str,
    window: WindowBounds,
    current: FeatureDrift,
    reference: FeatureDrift,
    settings: DataQualitySettings,
) -> list[Finding]:
    """The findings of every feature but those set to be ignored, each judged by its own
    thresholds where it has them."""
    rates = _rates(current, reference, settings.min_samples)
    rates = [r for r in rates if not settings.column(r.subject).ignore]
    qvalues = st.benjamini_hochberg([r.pvalue for r in rates])
    findings = [
        _rate_finding(model, window, r, q, settings) for r, q in zip(rates, qvalues, strict=True)
    ]
    schema = _schema(model, window, current, reference, settings.min_samples)
    return findings + [f for f in schema if not settings.column(f.subject).ignore]


def _rates(current: FeatureDrift, reference: FeatureDrift, minimum: int) -> list[_Rate]:
    rates = []
    for name, hist in sorted(current.numeric.items()):
        ref = reference.numeric.get(name)
        if ref is None:
            continue
        rates += _presence(name, hist, ref, minimum)
        if min(hist.n, ref.n) >= minimum and hist.counts.size and ref.counts.size:
            outside = int(hist.counts[0] + hist.counts[-1])
            ref_outside = int(ref.counts[0] + ref.counts[-1])
            rates.append(_Rate(name, "out_of_range", outside, hist.n, ref_outside, ref.n))
    for name, counts in sorted(current.categorical.items()):
        ref_counts = reference.categorical.get(name)
        if ref_counts is None:
            continue
        rates += _presence(name, counts, ref_counts, minimum)
        if min(counts.n, ref_counts.n) >= minimum:
            unseen = sum(v for k, v in counts.counts.items() if k not in ref_counts.counts)
            once, worth = _unseen_baseline(ref_counts)
            rates.append(_Rate(name, "unseen", unseen, counts.n, once, ref_counts.n, worth))
    return rates


def _unseen_baseline(reference: CategoryCounts) -> tuple[int, float]:
    """The reference's own count of unseen categories, and what it is worth. Left out
    of the reference, an event's category is unseen when it was seen once there: N1 of
    n (Good-Turing). That share varies more than a share of n events, by 2 N2 / n^2 in
    variance (Esty 1983; N2 categories seen twice), so it counts as fewer events."""
    once = sum(1 for k, v in reference.counts.items() if v == 1 and k != OTHER)
    twice = sum(1 for k, v in reference.counts.items() if v == 2 and k != OTHER)
    binomial = once * (1 - once / reference.n)
    return once, binomial / (binomial + 2 * twice) if binomial else 1.0


def _presence(
    name: str,
    current: NumericHistogram | CategoryCounts,
    reference: NumericHistogram | CategoryCounts,
    minimum: int,
) -> list[_Rate]:
    """Missing values and values of the wrong type, of any column."""
    total, ref_total = current.n + current.missing, reference.n + reference.missing
    if min(total, ref_total) < minimum:
        return []
    return [
        _Rate(name, "missing", current.missing, total, reference.missing, ref_total),
        _Rate(name, "wrong_type", current.wrong_type, total, reference.wrong_type, ref_total),
    ]


_WORDS = {
    "missing": "missing values",
    "wrong_type": "values of the wrong type",
    "out_of_range": "values outside the reference's range",
    "unseen": "categories unseen in the reference",
}
_BASELINE = {"unseen": " expected (the reference's events in categories it saw once)"}


def _rate_finding(
    model: str, window: WindowBounds, r: _Rate, qvalue: float, s: DataQualitySettings
) -> Finding:
    warning, critical = s.thresholds(r.subject)
    severity = Severity.of(r.rise, warning, critical) if qvalue <= s.alpha else Severity.OK
    share, ref_share = r.current / r.n, r.reference / r.n_reference
    return Finding(
        model=model,
        detector=NAME,
        subject=r.subject,
        statistic=r.check,
        value=r.rise,
        threshold=severity.threshold(warning, critical),
        severity=severity,
        n_reference=r.n_reference,
        n_current=r.n,
        window=window,
        explanation=f"feature '{r.subject}' of model '{model}': {_WORDS[r.check]} "
        f"{ref_share:.1%}{_BASELINE.get(r.check, '')} → {share:.1%}"
        + severity.note(f"q = {qvalue:.2g}")
        + ".",
        details={"share": share, "reference_share": ref_share, "q_value": qvalue},
    )


def _schema(
    model: str, window: WindowBounds, current: FeatureDrift, reference: FeatureDrift, minimum: int
) -> list[Finding]:
    """Features the reference had values of (of either type): still here (ok, so that
    an alert can resolve) or gone; and features with values now that the reference never had. Gone
    means none where the reference's share predicts at least 20 (a rare feature absent
    from a small window is chance, not a schema change)."""
    window_size = max((_total(current, k) for k in _names(current)), default=0)
    ref_size = max((_total(reference, k) for k in _names(reference)), default=0)
    findings = []
    for name in sorted(k for k in _names(reference) if _count(reference, k) >= minimum):
        expected = _count(reference, name) / ref_size * window_size
        if _count(current, name) > 0:
            findings.append(_schema_finding(model, window, name, True))
        elif expected >= MIN_EXPECTED_ABSENT:
            findings.append(_schema_finding(model, window, name, False))
    new = sorted(k for k in _names(current) - _names(reference) if _count(current, k) >= minimum)
    return findings + [_schema_finding(model, window, name, None) for name in new]


def _total(state: FeatureDrift, name: str) -> int:
    """Events a column was seen in, with a value or missing."""
    column = state.numeric.get(name) or state.categorical.get(name)
    return 0 if column is None else column.n + column.missing


def _names(state: FeatureDrift) -> set[str]:
    return set(state.numeric) | set(state.categorical)


def _count(state: FeatureDrift, name: str) -> int:
    """Values of a column in a state, of the right type or not (a numeric feature now
    sent as text is there, with the wrong type); 0 when the column never came."""
    column = state.numeric.get(name) or state.categorical.get(name)
    return 0 if column is None else column.n + column.wrong_type


def _schema_finding(model: str, window: WindowBounds, name: str, present: bool | None) -> Finding:
    """``present`` True: as in the reference; False: disappeared; None: new."""
    severity, what = {
        True: (Severity.OK, "is present as in the reference"),
        False: (Severity.CRITICAL, "disappeared: it had values in the reference, none now"),
        None: (Severity.WARNING, "appeared: the reference never had it"),
    }[present]
    return Finding(
        model=model,
        detector=NAME,
        subject=name,
        statistic="schema",
        value=0.0 if present else 1.0,
        threshold=1.0,
        severity=severity,
        n_reference=0,
        n_current=0,
        window=window,
        explanation=f"feature '{name}' of model '{model}' {what}.",
    )
