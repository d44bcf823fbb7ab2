"""What the detectors found, as gauges: each statistic against its thresholds, label
coverage and delay, and the alerts firing. Set once per closed window, never per event.

A model has a subject per feature or slice in some detectors, so only the
``METRICS__MAX_SUBJECTS`` subjects of each model and detector most breached in its
latest window are exported; the series of a subject that drops out of them, and of a
model let go, are removed, so the number of series stays bounded.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence

from prometheus_client import Gauge

from streamwatch.detectors import Finding, Severity
from streamwatch.detectors.coverage import NAME as COVERAGE
from streamwatch.observe.metrics import Metrics
from streamwatch.review.reviewer import NAME as REVIEW

# (subject, statistic) of one model and detector -> the severities of its thresholds.
_Exported = dict[tuple[str, str], set[Severity]]
_SEVERITIES = (Severity.WARNING, Severity.CRITICAL)


def _breach(finding: Finding) -> tuple[int, float]:
    """How breached a finding is, for ordering: its severity, then its value relative to
    its threshold (the value itself when the threshold is 0; NaN counts as nothing)."""
    value, threshold = finding.value, finding.threshold
    relative = value / threshold if threshold > 0 else value
    return finding.severity.rank, -math.inf if math.isnan(relative) else relative


def most_breached(findings: Iterable[Finding], limit: int) -> list[str]:
    """The ``limit`` subjects of ``findings`` most breached (by their worst finding),
    the worst first; ties by name."""
    worst: dict[str, tuple[int, float]] = {}
    for f in findings:
        worst[f.subject] = max(worst.get(f.subject, (-1, -math.inf)), _breach(f))
    ranked = sorted(worst, key=lambda subject: (_negated(worst[subject]), subject))
    return ranked[:limit]


def _negated(rank: tuple[int, float]) -> tuple[int, float]:
    return -rank[0], -rank[1]


class DetectorGauges:
    """The gauges of what one instance's models found, kept bounded."""

    def __init__(self, metrics: Metrics, max_subjects: int) -> None:
        if max_subjects < 0:
            raise ValueError(f"max_subjects must be 0 or more, not {max_subjects}")
        self.metrics = metrics
        self.max_subjects = max_subjects
        self._exported: dict[tuple[str, str], _Exported] = {}  # by model and detector
        self._models: set[str] = set()  # with alerts_firing series

    def closed(self, model: str, findings: Sequence[Finding]) -> None:
        """A closed window's findings: the statistics of each detector in it replace that
        detector's; label coverage and delay when its labels were evaluated."""
        self._models.add(model)
        for severity in _SEVERITIES:  # 0 until an alert fires
            self.metrics.alerts_firing.labels(model, severity.value)
        by_detector: dict[str, list[Finding]] = {}
        for f in findings:
            if f.detector == REVIEW:  # an estimate with its interval, no threshold
                self._review(f)
                continue
            by_detector.setdefault(f.detector, []).append(f)
            if f.detector == COVERAGE and f.statistic == "label_coverage":
                self._labels(f)
        for detector, found in by_detector.items():
            self._statistics(model, detector, found)

    def firing(self, alerts: Iterable[tuple[str, Severity]]) -> None:
        """The alerts firing now, as (model, severity) of each."""
        counts = Counter((model, severity.value) for model, severity in alerts)
        self._models.update(model for model, _ in counts)
        for model in self._models:
            for severity in _SEVERITIES:
                n = counts[model, severity.value]
                self.metrics.alerts_firing.labels(model, severity.value).set(n)

    def forget(self, models: Collection[str]) -> None:
        """Remove every series of ``models`` (let go, or moved to another instance)."""
        metrics = self.metrics
        for model, detector in [k for k in self._exported if k[0] in models]:
            self._remove(model, detector, self._exported.pop((model, detector)))
        for model in models:
            for severity in _SEVERITIES:
                metrics.alerts_firing.remove(model, severity.value)
            metrics.label_coverage.remove(model)
            metrics.label_delay.remove(model)
            for estimate in _ESTIMATES:
                _discard(metrics.review_accuracy, model, estimate)
        self._models.difference_update(models)

    def _statistics(self, model: str, detector: str, findings: list[Finding]) -> None:
        metrics = self.metrics
        kept = set(most_breached(findings, self.max_subjects))
        before = self._exported.pop((model, detector), {})
        exported: _Exported = {}
        for f in findings:
            if f.subject not in kept:
                continue
            key = (f.subject, f.statistic)
            metrics.statistic.labels(model, detector, *key).set(f.value)
            # A critical finding reports the critical threshold, any other the warning one.
            severity = Severity.CRITICAL if f.severity is Severity.CRITICAL else Severity.WARNING
            metrics.threshold.labels(model, detector, *key, severity.value).set(f.threshold)
            exported.setdefault(key, before.pop(key, set())).add(severity)
        self._remove(model, detector, before)  # dropped out of the most breached
        if exported:
            self._exported[model, detector] = exported

    def _remove(self, model: str, detector: str, exported: _Exported) -> None:
        for key, severities in exported.items():
            self.metrics.statistic.remove(model, detector, *key)
            for severity in severities:
                self.metrics.threshold.remove(model, detector, *key, severity.value)

    def _labels(self, coverage: Finding) -> None:
        self.metrics.label_coverage.labels(coverage.model).set(coverage.value)
        if coverage.n_current:  # with no label, no delay to tell
            delay = coverage.details["mean_delay_seconds"]
            self.metrics.label_delay.labels(coverage.model).set(delay)

    def _review(self, review: Finding) -> None:
        for estimate in _ESTIMATES:
            self.metrics.review_accuracy.labels(review.model, estimate).set(
                review.details[estimate]
            )


_ESTIMATES = ("weighted", "weighted_low", "weighted_high", "observed")


def _discard(gauge: Gauge, *labels: str) -> None:
    """Remove a series that may never have been set."""
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
