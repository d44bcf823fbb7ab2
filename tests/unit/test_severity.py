"""Severity (severity.py): ok < warning < critical, a value's severity by its two
thresholds, and what a finding of each severity reports."""

from __future__ import annotations

import pytest

from streamwatch.severity import Severity


def test_severities_are_ordered_ok_warning_critical() -> None:
    ranked = sorted(Severity, key=lambda s: s.rank, reverse=True)
    assert ranked == [Severity.CRITICAL, Severity.WARNING, Severity.OK]
    assert [s.value for s in ranked] == ["critical", "warning", "ok"]  # as configured


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, Severity.OK),
        (0.0999, Severity.OK),
        (0.1, Severity.WARNING),  # a threshold reached is crossed
        (0.2499, Severity.WARNING),
        (0.25, Severity.CRITICAL),
        (7.0, Severity.CRITICAL),
        (float("inf"), Severity.CRITICAL),
        (float("nan"), Severity.OK),  # no evidence is no alarm
    ],
)
def test_a_value_is_as_severe_as_the_highest_threshold_it_reaches(
    value: float, expected: Severity
) -> None:
    assert Severity.of(value, warning=0.1, critical=0.25) is expected


def test_a_finding_reports_the_threshold_it_crossed_or_the_warning_one_when_ok() -> None:
    assert Severity.CRITICAL.threshold(0.1, 0.25) == 0.25
    assert Severity.WARNING.threshold(0.1, 0.25) == 0.1
    assert Severity.OK.threshold(0.1, 0.25) == 0.1


def test_an_explanation_ends_with_the_severity_unless_ok() -> None:
    assert Severity.OK.note("p = 0.001") == ""
    assert Severity.WARNING.note("p = 0.001") == " (warning, p = 0.001)"
    assert Severity.CRITICAL.note() == " (critical)"
