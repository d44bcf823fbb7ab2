"""The alertmanager sink against real HTTP servers in threads: what it posts, to whom,
with which credentials, what it posts again, and how it fails."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from streamwatch.alerting.dispatcher import Dispatcher, Resumable
from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import AlertPolicy, Notification, isoformat
from streamwatch.alerting.routing import Router
from streamwatch.config import AlertmanagerSinkSettings
from streamwatch.detectors import Severity
from streamwatch.observe.metrics import Metrics
from streamwatch.sinks import Delivered, DeliveryFailed, RoutedSink
from streamwatch.sinks.alertmanager import LIFETIME, AlertmanagerSink
from streamwatch.sinks.log import LogSink
from tests.integration.receivers import Received, Receiver, Reply, receiving
from tests.unit.alerting.test_policy import finding, observe
from tests.unit.sinks.test_http import closed_port

NOW = 1_800_000_000.0
POSTABLE_KEYS = {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}


def accept(got: Received) -> Reply:
    return 200, {}


@pytest.fixture
def am() -> Iterator[Receiver]:
    with receiving(accept) as receiver:
        yield receiver


def base(receiver: Receiver) -> str:
    return receiver.url.removesuffix("/hooks/streamwatch")


def sink(*urls: str, **settings: Any) -> AlertmanagerSink:
    configured = AlertmanagerSinkSettings(kind="alertmanager", url=",".join(urls), **settings)
    return AlertmanagerSink("am", configured, clock=lambda: NOW)


def posted(receiver: Receiver, index: int = -1) -> list[dict[str, Any]]:
    got = receiver.requests[index]
    assert got.path == "/api/v2/alerts"
    assert got.headers["content-type"] == "application/json"
    alerts: list[dict[str, Any]] = msgspec.json.decode(got.body)
    return alerts


def fired(policy: AlertPolicy, window: int = 1) -> Notification:
    n = observe(policy, window, finding("x", Severity.WARNING, window))
    assert n is not None
    return n


def test_a_firing_alert_is_posted_as_a_postable_alert_ending_a_few_resends_later(
    am: Receiver,
) -> None:
    n = fired(AlertPolicy())
    am_sink = sink(base(am), resend_interval=30.0)
    assert am_sink.send(n) == Delivered("am")
    am_sink.close()
    (alert,) = posted(am)
    assert alert.keys() == POSTABLE_KEYS
    assert alert["labels"] == n.alerts[0].labels
    assert alert["labels"]["alertname"] == "FeatureDrift"
    annotations = alert["annotations"]
    assert {
        "summary",
        "description",
        "look_at",
        "value",
        "threshold",
        "window",
    } <= annotations.keys()
    assert all(isinstance(v, str) for v in annotations.values())
    assert alert["startsAt"] == "1970-01-01T00:02:00Z"
    assert alert["endsAt"] == isoformat(NOW + LIFETIME * 30.0)
    assert alert["generatorURL"].startswith("streamwatch://")
    linked = replace(n, link="https://sw.example/report?model=m")
    am_sink = sink(base(am))
    am_sink.send(linked)
    am_sink.close()
    assert posted(am)[0]["generatorURL"] == "https://sw.example/report?model=m"


def test_a_resolved_alert_is_posted_with_its_end_and_is_not_posted_again(am: Receiver) -> None:
    policy = AlertPolicy()
    am_sink = sink(base(am))
    am_sink.send(fired(policy))
    resolved = observe(policy, 2, finding("x", Severity.OK, 2))
    assert resolved is not None
    assert am_sink.send(resolved) == Delivered("am")
    (alert,) = posted(am)
    assert alert["endsAt"] == "1970-01-01T00:03:00Z"  # the end of the clean window
    assert am_sink.resend() is None  # nothing fires
    am_sink.close()


def test_firing_alerts_are_posted_again_every_resend_interval_until_they_resolve(
    am: Receiver,
) -> None:
    policy = AlertPolicy()
    am_sink = AlertmanagerSink(
        "am",
        AlertmanagerSinkSettings(kind="alertmanager", url=base(am), resend_interval=0.1),
    )
    am_sink.send(fired(policy))
    deadline = time.monotonic() + 5.0
    while len(am.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(am.requests) >= 4
    assert {a["labels"]["subject"] for r in range(4) for a in posted(am, r)} == {"x"}
    resolved = observe(policy, 2, finding("x", Severity.OK, 2))
    assert resolved is not None
    am_sink.send(resolved)
    sent = len(am.requests)
    time.sleep(0.35)
    am_sink.close()
    assert len(am.requests) == sent  # nothing fires: nothing is posted again


def test_a_send_posts_the_whole_group_and_what_escalated_ends_under_its_old_labels(
    am: Receiver,
) -> None:
    policy = AlertPolicy()
    am_sink = sink(base(am))
    am_sink.send(
        observe(policy, 1, finding("x", Severity.WARNING, 1), finding("y", Severity.WARNING, 1))
        or pytest.fail("nothing fired")
    )
    escalated = observe(policy, 2, finding("x", Severity.CRITICAL, 2))
    assert escalated is not None
    assert am_sink.send(escalated) == Delivered("am")
    alerts = posted(am)
    severities = sorted((a["labels"]["subject"], a["labels"]["severity"]) for a in alerts)
    assert severities == [("x", "critical"), ("x", "warning"), ("y", "warning")]
    [old] = [
        a for a in alerts if a["labels"]["severity"] == "warning" and a["labels"]["subject"] == "x"
    ]
    assert old["endsAt"] == isoformat(NOW)  # ended now
    resent = posted_by_resend(am_sink, am)
    assert sorted((a["labels"]["subject"], a["labels"]["severity"]) for a in resent) == [
        ("x", "critical"),
        ("y", "warning"),
    ]
    am_sink.close()


def posted_by_resend(am_sink: AlertmanagerSink, am: Receiver) -> list[dict[str, Any]]:
    assert am_sink.resend() == Delivered("am")
    return posted(am)


def test_a_notification_delivered_late_does_not_fire_again_what_resolved_since(
    am: Receiver,
) -> None:
    policy = AlertPolicy()
    firing = fired(policy)
    resolved = observe(policy, 2, finding("x", Severity.OK, 2))
    assert resolved is not None
    am_sink = sink(base(am))
    am_sink.send(resolved)
    before = len(am.requests)
    assert am_sink.send(firing) == Delivered("am")  # superseded: nothing to post
    assert len(am.requests) == before
    assert am_sink.resend() is None
    am_sink.close()


def test_resume_takes_on_a_restored_state_and_forget_lets_it_go(am: Receiver) -> None:
    policy = AlertPolicy()
    fired(policy)
    am_sink = sink(base(am))
    am_sink.resume(policy.standing())
    (alert,) = posted_by_resend(am_sink, am)
    assert alert["labels"]["subject"] == "x"
    assert alert["generatorURL"].startswith("streamwatch://")
    am_sink.forget(["m"])
    assert am_sink.resend() is None
    am_sink.close()


def test_a_cluster_is_posted_to_member_by_member_and_one_member_is_enough(am: Receiver) -> None:
    with receiving(lambda got: (503, {})) as down:
        am_sink = sink(base(down), base(am))
        assert am_sink.send(fired(AlertPolicy())) == Delivered("am")
        am_sink.close()
        assert posted(down) == posted(am)


def test_when_every_member_fails_the_failure_says_whether_a_retry_may_help(am: Receiver) -> None:
    n = fired(AlertPolicy())
    with receiving(lambda got: (400, {})) as refusing, receiving(lambda got: (503, {})) as down:
        refused = sink(base(refusing)).send(n)
        assert isinstance(refused, DeliveryFailed)
        assert not refused.retryable
        assert "400" in refused.reason
        mixed = sink(base(refusing), base(down)).send(n)
        assert isinstance(mixed, DeliveryFailed)
        assert mixed.retryable
        assert "member 1:" in mixed.reason
        assert "member 2:" in mixed.reason
    gone = sink(f"http://127.0.0.1:{closed_port()}").send(n)
    assert isinstance(gone, DeliveryFailed)
    assert gone.retryable


def test_a_bearer_token_or_basic_auth_is_sent(am: Receiver) -> None:
    n = fired(AlertPolicy())
    token = sink(base(am), token=SecretStr("s3cr3t-token"))
    token.send(n)
    token.close()
    assert am.requests[-1].headers["authorization"] == "Bearer s3cr3t-token"
    basic = sink(base(am), user="sw", password=SecretStr("pa55word"))
    basic.send(n)
    basic.close()
    expected = base64.b64encode(b"sw:pa55word").decode()
    assert am.requests[-1].headers["authorization"] == f"Basic {expected}"


def test_credentials_that_do_not_go_together_are_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="not both"):
        sink("http://am:9093", token=SecretStr("t"), user="u", password=SecretStr("p"))
    with pytest.raises(ValidationError, match="both a USER and a PASSWORD"):
        sink("http://am:9093", user="u")


def test_a_sink_is_handed_only_the_active_alerts_it_would_hear(am: Receiver) -> None:
    policy = AlertPolicy()
    observe(policy, 1, finding("x", Severity.WARNING, 1), finding("y", Severity.CRITICAL, 1))
    n = observe(policy, 2, finding("y", Severity.OK, 2))
    assert n is not None
    assert [a.labels["subject"] for a in n.active] == ["x"]
    critical_only = AlertmanagerSinkSettings(
        kind="alertmanager", url=base(am), min_severity=Severity.CRITICAL
    )
    am_sink = AlertmanagerSink("am", critical_only, clock=lambda: NOW)
    routed = [RoutedSink(am_sink, critical_only)]
    outbox = Outbox()
    assert Router(routed, [], outbox).route(n) == 1
    dispatcher = Dispatcher(outbox, routed, Metrics(CollectorRegistry()))
    dispatcher.start()
    deadline = time.monotonic() + 5.0
    while not am.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [a["labels"]["subject"] for a in posted(am)] == ["y"]  # not x, a warning
    dispatcher.resume(policy.standing())
    assert am_sink.resend() is None  # x alone stands: a warning, not this sink's
    dispatcher.stop()
    outbox.close()


def test_only_sinks_that_hold_what_fires_are_told_of_a_restored_state() -> None:
    am_sink = sink("http://127.0.0.1:9")
    assert isinstance(am_sink, Resumable)
    assert not isinstance(LogSink("console"), Resumable)
    am_sink.close()
