from __future__ import annotations

import msgspec

from streamwatch.alerting.policy import AlertPolicy, Notification, alias, fingerprint
from streamwatch.config import AlertSettings, Hysteresis
from streamwatch.detectors import Finding, Severity
from streamwatch.windows import WindowBounds


def finding(
    subject: str,
    severity: Severity,
    window: int,
    model: str = "m",
    detector: str = "feature_drift",
    statistic: str = "wasserstein",
) -> Finding:
    return Finding(
        model=model,
        detector=detector,
        subject=subject,
        statistic=statistic,
        value={Severity.OK: 0.01, Severity.WARNING: 0.15, Severity.CRITICAL: 0.4}[severity],
        threshold=0.1,
        severity=severity,
        n_reference=1000,
        n_current=1000,
        window=WindowBounds(window, window * 60.0, (window + 1) * 60.0),
        explanation=f"{subject} {severity.value}",
    )


def observe(policy: AlertPolicy, window: int, *findings: Finding) -> Notification | None:
    return policy.observe("m", WindowBounds(window, window * 60.0, (window + 1) * 60.0), findings)


def lifecycle(policy: AlertPolicy, severities: str) -> str:
    """Feed one subject's verdicts (. ok, w warning, c critical, _ inconclusive) and
    spell what was sent per window: F fired, R repeated, E escalated, X resolved, - nothing."""
    out, firing = "", False
    for window, verdict in enumerate(severities):
        severity = {".": Severity.OK, "w": Severity.WARNING, "c": Severity.CRITICAL}.get(verdict)
        sent = None if severity is None else observe(policy, window, finding("x", severity, window))
        if sent is None:
            out += "-"
            continue
        (alert,) = sent.alerts
        if alert.status == "resolved":
            out, firing = out + "X", False
        else:
            out += "R" if alert.repeated else "E" if firing else "F"
            firing = True
    return out


def settings(**hysteresis: int) -> AlertSettings:
    return AlertSettings(hysteresis=Hysteresis(**hysteresis), repeat_interval=3600.0)


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
    assert policy.tracks == {}


def test_findings_of_one_window_are_one_notification() -> None:
    policy = AlertPolicy()
    n = observe(
        policy,
        1,
        finding("x", Severity.WARNING, 1),
        finding("y", Severity.CRITICAL, 1, detector="data_quality"),
        finding("z", Severity.OK, 1),
    )
    assert n is not None
    assert [a.labels["subject"] for a in n.alerts] == ["x", "y"]
    body = n.to_dict(receiver="audit")
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["commonLabels"] == {"model": "m", "statistic": "wasserstein"}
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    critical_only = n.at_least(Severity.CRITICAL)
    assert critical_only is not None
    assert [a.labels["subject"] for a in critical_only.alerts] == ["y"]
    assert n.at_least(Severity.CRITICAL) == critical_only


def sample_notification_id_is_the_same_when_a_window_is_processed_again() -> None:
    first = observe(AlertPolicy(), 1, finding("x", Severity.WARNING, 1))
    again = observe(AlertPolicy(), 1, finding("x", Severity.WARNING, 1))
    other = observe(AlertPolicy(), 2, finding("x", Severity.WARNING, 2))
    assert first is not None
    assert again is not None
    assert other is not None
    assert first.id == again.id != other.id


def test_hysteresis_fires_on_n_of_the_last_m_windows_and_resolves_after_k_clean() -> None:
    assert lifecycle(AlertPolicy(settings()), "w.w.") == "FXFX"  # 1 of 1, resolve after 1
    two_of_three = AlertPolicy(settings(fire_after=2, of_last=3, resolve_after=2))
    assert lifecycle(two_of_three, "w..w.w.w..") == "-----F---X"
    # Inconclusive windows (no finding) count neither way.
    assert lifecycle(AlertPolicy(settings(fire_after=2, of_last=2)), "w_w") == "--F"


def test_a_firing_alert_repeats_every_interval_while_it_breaches() -> None:
    # Windows are a minute long: a 3-minute interval repeats every third window.
    policy = AlertPolicy(AlertSettings(repeat_interval=180.0))
    assert lifecycle(policy, "wwwwwww.") == "F--R--RX"
    escalating = AlertPolicy(AlertSettings(repeat_interval=180.0))
    assert lifecycle(escalating, "wwcc.") == "F-E-X"


def test_a_critical_alert_inhibits_only_warnings_of_its_subject_by_default() -> None:
    policy = AlertPolicy()
    sent = observe(
        policy,
        1,
        finding("x", Severity.WARNING, 1),  # another feature: sent
        finding("y", Severity.CRITICAL, 1),
        finding("y", Severity.WARNING, 1, statistic="ks"),  # same feature: inhibited
        finding("q", Severity.WARNING, 1, detector="data_quality"),  # another detector
    )
    assert sent is not None
    assert sorted((a.labels["subject"], a.labels["statistic"]) for a in sent.alerts) == [
        ("q", "wasserstein"),
        ("x", "wasserstein"),
        ("y", "wasserstein"),
    ]


def test_inhibition_follows_its_equal_labels() -> None:
    policy = AlertPolicy(AlertSettings(inhibit_equal=("model", "detector")))
    sent = observe(
        policy,
        1,
        finding("x", Severity.WARNING, 1),
        finding("y", Severity.CRITICAL, 1),
        finding("q", Severity.WARNING, 1, detector="data_quality"),  # another detector
    )
    assert sent is not None
    assert sorted(a.labels["subject"] for a in sent.alerts) == ["q", "y"]
    # The critical one resolves; the warning, still breaching, is announced now.
    later = observe(policy, 2, finding("x", Severity.WARNING, 2), finding("y", Severity.OK, 2))
    assert later is not None
    assert sorted((a.labels["subject"], a.status) for a in later.alerts) == [
        ("x", "firing"),
        ("y", "resolved"),
    ]


def test_an_alert_inhibited_all_along_resolves_silently() -> None:
    policy = AlertPolicy()
    ks = "ks"
    observe(
        policy,
        1,
        finding("y", Severity.WARNING, 1, statistic=ks),
        finding("y", Severity.CRITICAL, 1),
    )
    quiet = observe(
        policy, 2, finding("y", Severity.OK, 2, statistic=ks), finding("y", Severity.CRITICAL, 2)
    )
    assert quiet is None


def test_extra_labels_join_the_identity_and_the_record() -> None:
    policy = AlertPolicy(AlertSettings(labels={"team": "risk"}))
    sent = observe(policy, 1, finding("x", Severity.WARNING, 1))
    assert sent is not None
    (alert,) = sent.alerts
    assert alert.labels["team"] == "risk"
    plain = observe(AlertPolicy(), 1, finding("x", Severity.WARNING, 1))
    assert plain is not None
    assert alert.fingerprint != plain.alerts[0].fingerprint


def test_the_policy_resumes_from_a_snapshot_mid_hysteresis() -> None:
    whole = AlertPolicy(settings(fire_after=2, of_last=3, resolve_after=2))
    first = lifecycle(whole, "w.")
    resumed = AlertPolicy(settings(fire_after=2, of_last=3, resolve_after=2))
    resumed.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(whole.snapshot())))
    assert first + lifecycle(resumed, "__w..") == "----F-X"


def test_redacted_features_never_appear_in_an_alert() -> None:
    policy = AlertPolicy(AlertSettings(redact=("income",)))
    sent = observe(
        policy,
        1,
        finding("income", Severity.WARNING, 1),
        finding("income_band", Severity.WARNING, 1, detector="data_quality"),  # another name
    )
    assert sent is not None
    text = msgspec.json.encode(sent.to_dict(receiver="ops")).decode()
    assert 'income"' not in text
    assert "income " not in text
    (redacted, other) = sent.alerts
    assert redacted.labels["subject"] == alias("income")
    assert redacted.description == f"{alias('income')} warning"
    assert other.labels["subject"] == "income_band"
    again = observe(policy, 2, finding("income", Severity.OK, 2))
    assert again is not None
    assert again.alerts[0].fingerprint == redacted.fingerprint  # one alert throughout
