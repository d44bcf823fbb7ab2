"""Routing: one outbox row per sink per notification, by severity and label matchers;
silences hold alerts back but keep the record; retrain sinks cool down per model."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import AlertPolicy, Notification
from streamwatch.alerting.routing import SILENCED, Router
from streamwatch.config import (
    LogSinkSettings,
    RetrainSinkSettings,
    Silence,
    SinkSettings,
)
from streamwatch.detectors import Severity
from streamwatch.sinks import RoutedSink
from streamwatch.sinks.log import LogSink
from tests.unit.alerting.test_policy import finding


def window_of(index: int, *findings_: tuple[str, Severity, str]) -> Notification:
    policy = AlertPolicy()
    n = policy.observe(
        "m",
        finding("_", Severity.OK, index).window,
        [finding(subject, severity, index, detector=d) for subject, severity, d in findings_],
    )
    assert n is not None
    return n


def router(outbox: Outbox, silences: tuple[Silence, ...] = (), **sinks: SinkSettings) -> Router:
    routed = [RoutedSink(LogSink(name), settings) for name, settings in sinks.items()]
    return Router(routed, silences, outbox)


def stored(outbox: Outbox, sink: str) -> list[list[str]]:
    """Subjects of each notification stored for ``sink``, in order."""
    rows = outbox._db.execute(
        "SELECT notification FROM outbox WHERE sink = ? ORDER BY created", (sink,)
    ).fetchall()
    return [
        [a.labels["subject"] for a in msgspec.msgpack.decode(blob, type=Notification).alerts]
        for (blob,) in rows
    ]


MIXED = (
    ("x", Severity.WARNING, "feature_drift"),
    ("y", Severity.CRITICAL, "data_quality"),
    ("z", Severity.WARNING, "operational"),
)


def test_each_sink_gets_one_notification_of_the_alerts_it_wants() -> None:
    outbox = Outbox()
    r = router(
        outbox,
        everything=LogSinkSettings(kind="log"),
        pager=LogSinkSettings(kind="log", min_severity=Severity.CRITICAL),
        quality=LogSinkSettings(kind="log", matchers={"detector": "data_quality"}),
        nobody=LogSinkSettings(kind="log", matchers={"model": "other"}),
    )
    n = window_of(1, *MIXED)
    assert r.route(n) == 3
    assert stored(outbox, "everything") == [["x", "y", "z"]]
    assert stored(outbox, "pager") == [["y"]]
    assert stored(outbox, "quality") == [["y"]]
    assert stored(outbox, "nobody") == []
    assert r.route(n) == 0  # the same window routed again: nothing new


def test_a_silence_holds_matching_alerts_back_in_its_time_range_and_keeps_them() -> None:
    outbox = Outbox()
    n = window_of(1, *MIXED)  # the window ends at 120 s
    silence = Silence(
        matchers={"detector": "operational"},
        starts=datetime.fromtimestamp(100, UTC),
        ends=datetime.fromtimestamp(200, UTC),
    )
    r = router(outbox, (silence,), everything=LogSinkSettings(kind="log"))
    r.route(n)
    assert stored(outbox, "everything") == [["x", "y"]]
    assert stored(outbox, SILENCED) == [["z"]]
    assert outbox.counts()[(SILENCED, "silenced")] == 1
    later = router(Outbox(), (silence,), everything=LogSinkSettings(kind="log"))
    outside = window_of(5, *MIXED)  # ends at 360 s, after the silence
    later.route(outside)
    assert stored(later.outbox, "everything") == [["x", "y", "z"]]


def test_a_retrain_sink_triggers_once_per_model_per_cooldown() -> None:
    outbox = Outbox()
    retrain = RetrainSinkSettings(kind="retrain", url="http://unused", cooldown=600.0)
    r = router(outbox, retrain=retrain)
    critical = ("x", Severity.CRITICAL, "performance")
    assert r.route(window_of(1, critical)) == 1  # ends at 120 s
    assert r.route(window_of(5, critical)) == 0  # 360 s: cooling down
    assert r.route(window_of(11, critical)) == 1  # 720 s: 600 s since the last trigger
    warning = ("x", Severity.WARNING, "performance")
    assert r.route(window_of(30, warning)) == 0  # below its default minimum: critical
    resumed = router(Outbox(), retrain=retrain)
    resumed.restore(msgspec.json.decode(msgspec.json.encode(r.snapshot())))
    assert resumed.route(window_of(12, critical)) == 0
