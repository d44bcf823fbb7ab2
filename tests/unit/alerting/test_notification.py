"""The notification is Alertmanager's webhook payload of the model's whole group: what
changed, and the alerts still firing beside it, as the policy keeps them (checkpoints
included)."""

from __future__ import annotations

from dataclasses import replace

import msgspec

from streamwatch.alerting.notification import generator_url
from streamwatch.alerting.policy import AlertPolicy, Notification
from streamwatch.detectors import Severity
from streamwatch.windows import WindowBounds
from tests.unit.alerting.test_policy import finding, observe, settings

ALERT_KEYS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}
PAYLOAD_KEYS = {
    "receiver",
    "status",
    "alerts",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "version",
    "groupKey",
    "truncatedAlerts",
}


def two_firing_then_one_resolved(policy: AlertPolicy) -> Notification:
    observe(policy, 1, finding("x", Severity.WARNING, 1), finding("y", Severity.CRITICAL, 1))
    resolved = observe(policy, 2, finding("x", Severity.OK, 2), finding("y", Severity.CRITICAL, 2))
    assert resolved is not None
    return resolved


def test_the_payload_has_alertmanagers_keys_and_the_notification_id() -> None:
    n = observe(AlertPolicy(), 1, finding("x", Severity.WARNING, 1))
    assert n is not None
    body = n.to_dict(receiver="ops")
    assert body.keys() == PAYLOAD_KEYS | {"id", "window", "changed"}
    assert (body["version"], body["truncatedAlerts"], body["id"]) == ("4", 0, n.id)
    assert body["externalURL"] == "streamwatch://"
    (alert,) = body["alerts"]
    assert alert.keys() == ALERT_KEYS
    assert all(isinstance(v, str) for v in alert["annotations"].values())
    assert alert["annotations"]["value"] == "0.15"
    assert alert["annotations"]["window"] == "1970-01-01T00:01:00Z/1970-01-01T00:02:00Z"
    assert alert["generatorURL"] == generator_url(None, "m", n.window)
    assert alert["generatorURL"].startswith("streamwatch://")


def test_a_notification_carries_what_still_fires_and_the_payload_shows_the_whole_group() -> None:
    n = two_firing_then_one_resolved(AlertPolicy())
    assert [(a.labels["subject"], a.status) for a in n.alerts] == [("x", "resolved")]
    assert [(a.labels["subject"], a.status) for a in n.active] == [("y", "firing")]
    body = n.to_dict(receiver="ops")
    assert body["status"] == "firing"  # y still fires: the group is not resolved
    assert [(a["labels"]["subject"], a["status"]) for a in body["alerts"]] == [
        ("x", "resolved"),
        ("y", "firing"),
    ]
    assert body["changed"] == [n.alerts[0].fingerprint]
    assert body["window"] == {"start": "1970-01-01T00:02:00Z", "end": "1970-01-01T00:03:00Z"}


def test_common_annotations_are_only_those_every_alert_carries() -> None:
    n = two_firing_then_one_resolved(AlertPolicy())
    common = n.to_dict(receiver="ops")["commonAnnotations"]
    assert common == {"threshold": "0.1"}  # x's window and y's differ: y still fires
    linked = replace(n, link="https://sw.example/report?model=m&window=w")
    body = linked.to_dict(receiver="ops")
    assert body["commonAnnotations"]["report_url"] == linked.link
    assert body["externalURL"] == "https://sw.example"
    assert {a["generatorURL"] for a in body["alerts"]} == {linked.link}


def test_only_announced_alerts_stand_and_a_resolved_one_leaves() -> None:
    policy = AlertPolicy()
    observe(policy, 1, finding("x", Severity.WARNING, 1), finding("y", Severity.CRITICAL, 1))
    # Inhibition is by model, detector and subject: y's critical leaves x's warning be.
    assert sorted(a.labels["subject"] for a in policy.standing()["m"]) == ["x", "y"]
    observe(policy, 2, finding("x", Severity.OK, 2), finding("y", Severity.OK, 2))
    assert policy.standing() == {}


def test_an_inhibited_warning_does_not_stand() -> None:
    policy = AlertPolicy()
    observe(
        policy,
        1,
        finding("x", Severity.CRITICAL, 1),
        finding("x", Severity.WARNING, 1, statistic="psi"),
    )
    assert [a.labels["statistic"] for a in policy.standing()["m"]] == ["wasserstein"]


def test_standing_alerts_survive_a_checkpoint_and_older_checkpoints_still_restore() -> None:
    policy = AlertPolicy()
    observe(policy, 1, finding("x", Severity.WARNING, 1))
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(policy.snapshot()))
    restored = AlertPolicy()
    restored.restore(state)
    assert restored.standing() == policy.standing()
    # A checkpoint of before: tracks of six fields, no last alert; they restore, firing.
    old = {key: track[:6] for key, track in state.items()}
    older = AlertPolicy()
    older.restore(old)
    assert older.firing == policy.firing
    assert older.standing() == {}


def test_a_repeat_stands_as_unrepeated_and_active_leaves_out_what_changed() -> None:
    policy = AlertPolicy(settings())  # sent again after an hour
    observe(policy, 0, finding("x", Severity.WARNING, 0), finding("y", Severity.WARNING, 0))
    later = 60
    n = observe(policy, later, finding("x", Severity.WARNING, later))
    assert n is not None
    assert [(a.labels["subject"], a.repeated) for a in n.alerts] == [("x", True)]
    assert [a.labels["subject"] for a in n.active] == ["y"]
    x, _ = policy.standing()["m"]
    assert not x.repeated
    assert x.window == WindowBounds(later, later * 60.0, (later + 1) * 60.0)
