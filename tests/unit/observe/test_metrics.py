"""The metrics (metrics.py): every series on the registry passed in, named
``streamwatch_*``, and the totals the replay summary and the last log line print."""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry

from streamwatch.events.schema import BadReason
from streamwatch.observe.metrics import RESULTS, Metrics


def test_the_series_are_on_the_registry_passed_in_and_on_no_other() -> None:
    mine, other = CollectorRegistry(), CollectorRegistry()
    metrics = Metrics(mine)
    Metrics(other)
    metrics.events.labels(model="fraud").inc(3)
    assert mine.get_sample_value("streamwatch_events_total", {"model": "fraud"}) == 3.0
    assert other.get_sample_value("streamwatch_events_total", {"model": "fraud"}) is None


def test_every_series_is_named_streamwatch_and_durations_are_in_seconds() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    families = {f.name: f.type for f in registry.collect()}
    assert families
    assert [name for name in families if not name.startswith("streamwatch_")] == []
    assert {name for name, kind in families.items() if kind == "histogram"} == {
        "streamwatch_checkpoint_seconds",
        "streamwatch_processing_seconds",
    }


def test_a_total_sums_a_counter_over_the_labels_not_given() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.labels.labels(model="a", outcome="joined").inc(3)
    metrics.labels.labels(model="b", outcome="joined").inc(2)
    metrics.labels.labels(model="a", outcome="late").inc()
    assert metrics.total("streamwatch_label_events") == 6
    assert metrics.total("streamwatch_label_events", outcome="joined") == 5
    assert metrics.total("streamwatch_label_events", model="a", outcome="late") == 1
    assert metrics.total("streamwatch_label_events", model="c") == 0  # never counted
    assert metrics.total("streamwatch_redelivered_messages") == 0


def test_the_summary_is_the_runs_totals() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.consumed.labels(topic="events").inc(10)
    metrics.consumed.labels(topic="labels").inc(4)
    metrics.events.labels(model="m").inc(7)
    metrics.labels.labels(model="m", outcome="joined").inc(3)
    metrics.bad_events.labels(reason="invalid_json").inc(2)
    metrics.bad_events.labels(reason="model_limit").inc()
    metrics.late_events.labels(model="m").inc()
    metrics.redelivered.inc(5)
    metrics.dead_letters.inc(3)
    metrics.windows_closed.labels(model="m", role="reference").inc()
    metrics.windows_closed.labels(model="m", role="evaluated").inc(2)
    metrics.alerts.labels(model="m", detector="feature_drift", status="firing").inc(2)
    metrics.alerts.labels(model="m", detector="feature_drift", status="resolved").inc()
    assert metrics.summary() == {
        "consumed": 14,
        "windowed": 7,
        "labels": 3,
        "bad": 3,
        "late": 1,
        "redelivered": 5,
        "dead_letters": 3,
        "windows_closed": 3,
        "alerts_firing": 2,
        "alerts_resolved": 1,
    }


def test_the_consumer_lag_is_read_back_per_topic_and_partition() -> None:
    metrics = Metrics(CollectorRegistry())
    assert metrics.lags() == {}
    metrics.lag.labels(topic="events", partition="0").set(12)
    metrics.lag.labels(topic="events", partition="3").set(0)
    metrics.lag.labels(topic="events", partition="0").set(40)  # the last measure counts
    assert metrics.lags() == {"events:0": 40, "events:3": 0}


def test_every_bad_event_reason_is_counted_from_0() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    for reason in get_args(BadReason):
        assert registry.get_sample_value("streamwatch_bad_events_total", {"reason": reason}) == 0


def test_every_result_of_each_sink_delivered_to_is_counted_from_0() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    assert metrics.total("streamwatch_notifications") == 0
    metrics.delivering(["chat", "hook"], dict)
    for sink in ("chat", "hook"):
        for result in RESULTS:
            labels = {"sink": sink, "result": result}
            assert registry.get_sample_value("streamwatch_notifications_total", labels) == 0


def test_the_outbox_backlog_is_read_when_scraped_and_is_0_for_a_sink_with_none() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    assert registry.get_sample_value("streamwatch_outbox_pending", {"sink": "hook"}) is None
    pending = {"hook": 3}
    metrics.delivering(["chat", "hook"], lambda: pending)
    assert registry.get_sample_value("streamwatch_outbox_pending", {"sink": "hook"}) == 3
    assert registry.get_sample_value("streamwatch_outbox_pending", {"sink": "chat"}) == 0
    pending["gone"] = 1  # rows of a sink no longer configured are still shown
    del pending["hook"]
    assert registry.get_sample_value("streamwatch_outbox_pending", {"sink": "hook"}) == 0
    assert registry.get_sample_value("streamwatch_outbox_pending", {"sink": "gone"}) == 1
