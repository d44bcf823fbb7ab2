from __future__ import annotations

from streamwatch.alerts import AlertPolicy, fingerprint
from streamwatch.detectors import Finding, Severity
from streamwatch.windows import WindowBounds


def finding(subject: str, severity: Severity, window: int, model: str = "m") -> Finding:
    return Finding(
        model=model,
        detector="feature_drift",
        subject=subject,
        statistic="wasserstein",
        value={Severity.OK: 0.01, Severity.WARNING: 0.15, Severity.CRITICAL: 0.4}[severity],
        threshold=0.1,
        severity=severity,
        n_reference=1000,
        n_current=1000,
        window=WindowBounds(window, window * 60.0, (window + 1) * 60.0),
        explanation=f"{subject} {severity.value}",
    )


def observe(policy: AlertPolicy, window: int, *findings: Finding):  # type: ignore[no-untyped-def]
    return policy.observe("m", WindowBounds(window, window * 60.0, (window + 1) * 60.0), findings)


def test_fingerprint_is_stable_and_ignores_label_order() -> None:
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})
    assert len(fingerprint({"a": "1"})) == 16


def test_fire_once_escalate_then_resolve() -> None:
    policy = AlertPolicy()
    assert observe(policy, 0, finding("x", Severity.OK, 0)) is None
    fired = observe(policy, 1, finding("x", Severity.WARNING, 1))
    assert fired is not None
    (alert,) = fired.alerts
    assert (alert.status, alert.labels["severity"], alert.starts_at) == ("firing", "warning", 120.0)
    assert observe(policy, 2, finding("x", Severity.WARNING, 2)) is None  # no repeat
    escalated = observe(policy, 3, finding("x", Severity.CRITICAL, 3))
    assert escalated is not None
    assert escalated.alerts[0].labels["severity"] == "critical"
    assert escalated.alerts[0].starts_at == 120.0  # the same alert, still since window 1
    resolved = observe(policy, 4, finding("x", Severity.OK, 4))
    assert resolved is not None
    (end,) = resolved.alerts
    assert (end.status, end.ends_at, end.fingerprint) == ("resolved", 300.0, alert.fingerprint)
    assert end.to_dict()["endsAt"] == "1970-01-01T00:05:00Z"
    assert policy.active == {}


def test_findings_of_one_window_are_one_notification() -> None:
    policy = AlertPolicy()
    n = observe(
        policy,
        1,
        finding("x", Severity.WARNING, 1),
        finding("y", Severity.CRITICAL, 1),
        finding("z", Severity.OK, 1),
    )
    assert n is not None
    assert [a.labels["subject"] for a in n.alerts] == ["x", "y"]
    body = n.to_dict(receiver="audit")
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["commonLabels"] == {
        "alertname": "FeatureDrift",
        "model": "m",
        "detector": "feature_drift",
        "statistic": "wasserstein",
    }
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    critical_only = n.at_least(Severity.CRITICAL)
    assert critical_only is not None
    assert [a.labels["subject"] for a in critical_only.alerts] == ["y"]
    assert n.at_least(Severity.CRITICAL) == critical_only


def test_notification_id_is_the_same_when_a_window_is_processed_again() -> None:
    first = observe(AlertPolicy(), 1, finding("x", Severity.WARNING, 1))
    again = observe(AlertPolicy(), 1, finding("x", Severity.WARNING, 1))
    other = observe(AlertPolicy(), 2, finding("x", Severity.WARNING, 2))
    assert first is not None
    assert again is not None
    assert other is not None
    assert first.id == again.id != other.id
