"""The detectors' gauges (detector_metrics.py): the most breached subjects per model and
detector with their thresholds, the rest removed; label coverage and delay; the alerts
firing; a model let go leaves no series."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from streamwatch.detectors import Finding, Severity
from streamwatch.observe.detector_metrics import DetectorGauges, most_breached
from streamwatch.observe.metrics import Metrics
from streamwatch.windows import WindowBounds

WINDOW = WindowBounds(0, 0.0, 60.0)


def drift(
    subject: str, value: float, severity: Severity = Severity.OK, model: str = "m"
) -> Finding:
    threshold = 0.25 if severity is Severity.CRITICAL else 0.1
    return Finding(
        model, "feature_drift", subject, "psi", value, threshold, severity, 1000, 500, WINDOW, ""
    )


def coverage(labels: int, predictions: int, delay: float, model: str = "m") -> Finding:
    details = {"labels": labels, "predictions": predictions, "mean_delay_seconds": delay}
    share = labels / predictions
    return Finding(
        model, "labels", "coverage", "label_coverage", share, 0.0, Severity.OK, 0, labels,
        WINDOW, "", details,
    )  # fmt: skip


def gauges(max_subjects: int = 2) -> tuple[DetectorGauges, CollectorRegistry]:
    registry = CollectorRegistry()
    return DetectorGauges(Metrics(registry), max_subjects), registry


def series(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name
    }


def statistics(registry: CollectorRegistry) -> dict[str, float]:
    return {dict(k)["subject"]: v for k, v in series(registry, "streamwatch_statistic").items()}


def thresholds(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    found = series(registry, "streamwatch_statistic_threshold")
    return {(dict(k)["subject"], dict(k)["severity"]): v for k, v in found.items()}


def test_the_most_breached_come_first_by_severity_then_by_value_over_threshold() -> None:
    findings = [
        drift("a", 0.09),  # 0.9 of its threshold
        drift("b", 0.3, Severity.CRITICAL),  # 1.2
        drift("c", 0.5),  # 5 times, but not significant: ok
        drift("d", 0.2, Severity.WARNING),  # 2
        drift("e", math.nan),
    ]
    assert most_breached(findings, 10) == ["b", "d", "c", "a", "e"]
    assert most_breached(findings, 2) == ["b", "d"]
    assert most_breached(findings, 0) == []


def test_only_the_most_breached_subjects_are_exported_with_their_thresholds() -> None:
    exported, registry = gauges(max_subjects=2)
    exported.closed("m", [drift("a", 0.05), drift("b", 0.15, Severity.WARNING), drift("c", 0.01)])
    assert statistics(registry) == {"a": 0.05, "b": 0.15}
    assert thresholds(registry) == {("a", "warning"): 0.1, ("b", "warning"): 0.1}
    labels = next(iter(series(registry, "streamwatch_statistic")))
    assert dict(labels) == {
        "model": "m",
        "detector": "feature_drift",
        "subject": "a",
        "statistic": "psi",
    }


def test_a_subject_that_drops_out_of_the_most_breached_loses_its_series() -> None:
    exported, registry = gauges(max_subjects=2)
    exported.closed("m", [drift("a", 0.05), drift("b", 0.15, Severity.WARNING), drift("c", 0.01)])
    exported.closed("m", [drift("a", 0.02), drift("b", 0.3, Severity.CRITICAL), drift("c", 0.08)])
    assert statistics(registry) == {"b": 0.3, "c": 0.08}
    # b's warning threshold, reported while it was below critical, stays beside the critical.
    assert thresholds(registry) == {
        ("b", "warning"): 0.1,
        ("b", "critical"): 0.25,
        ("c", "warning"): 0.1,
    }


def test_a_window_replaces_only_the_statistics_of_the_detectors_it_has() -> None:
    exported, registry = gauges()
    exported.closed("m", [drift("a", 0.05)])
    exported.closed("m", [coverage(80, 100, 120.0)])  # its labels evaluated later
    assert statistics(registry) == {"a": 0.05, "coverage": 0.8}
    exported.closed("other", [drift("a", 0.07, model="other")])
    assert len(series(registry, "streamwatch_statistic")) == 3


def test_label_coverage_and_delay_of_the_last_window_whose_labels_were_evaluated() -> None:
    exported, registry = gauges()
    exported.closed("m", [coverage(80, 100, 120.0)])
    assert registry.get_sample_value("streamwatch_label_coverage_ratio", {"model": "m"}) == 0.8
    assert registry.get_sample_value("streamwatch_label_delay_seconds", {"model": "m"}) == 120.0
    exported.closed("m", [coverage(0, 100, math.nan)])  # no label: the delay stays
    assert registry.get_sample_value("streamwatch_label_coverage_ratio", {"model": "m"}) == 0.0
    assert registry.get_sample_value("streamwatch_label_delay_seconds", {"model": "m"}) == 120.0


def test_the_alerts_firing_by_model_and_severity_start_at_0() -> None:
    exported, registry = gauges()
    exported.closed("m", [])
    exported.closed("n", [])
    assert set(series(registry, "streamwatch_alerts_firing").values()) == {0.0}
    exported.firing([("m", Severity.WARNING), ("m", Severity.WARNING), ("n", Severity.CRITICAL)])
    firing = {
        tuple(dict(k).values()): v for k, v in series(registry, "streamwatch_alerts_firing").items()
    }
    assert firing == {
        ("m", "warning"): 2.0,
        ("m", "critical"): 0.0,
        ("n", "warning"): 0.0,
        ("n", "critical"): 1.0,
    }
    exported.firing([])  # all resolved
    assert set(series(registry, "streamwatch_alerts_firing").values()) == {0.0}


def test_a_model_let_go_leaves_no_series() -> None:
    exported, registry = gauges()
    for model in ("m", "n"):
        exported.closed(model, [drift("a", 0.05, model=model), coverage(8, 10, 60.0, model)])
    exported.firing([("m", Severity.CRITICAL)])
    exported.forget(["m"])
    left = {s.labels["model"] for f in registry.collect() for s in f.samples if "model" in s.labels}
    assert left == {"n"}
    exported.firing([])  # m is not made again
    assert (
        registry.get_sample_value(
            "streamwatch_alerts_firing", {"model": "m", "severity": "warning"}
        )
        is None
    )


def test_max_subjects_is_validated() -> None:
    with pytest.raises(ValueError, match="max_subjects"):
        gauges(max_subjects=-1)
