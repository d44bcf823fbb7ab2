"""Review requests on their way: stored in the outbox beside notifications (once per
event, carried with a partition), delivered only to review sinks, which hear no alerts;
the settings that make them."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamwatch.alerting.dispatcher import Dispatcher
from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import sample_notification
from streamwatch.alerting.routing import Router
from streamwatch.config import (
    FileSinkSettings,
    ReviewSinkSettings,
    Settings,
    load_settings,
)
from streamwatch.errors import ConfigError
from streamwatch.observe.metrics import Metrics
from streamwatch.review.request import ReviewRequest
from streamwatch.sinks import Delivered, DeliveryFailed, RoutedSink, build_sink
from streamwatch.sinks.file import FileSink
from streamwatch.sinks.review import ReviewFile
from tests.unit.alerting.test_dispatcher import delivered

NOW = 1_800_000_000.0


def request(event_id: str = "e1", model: str = "fraud") -> ReviewRequest:
    return ReviewRequest(
        model,
        event_id,
        "3",
        NOW,
        7,
        {"uncertain": {"score": 0.51}, "baseline": {}},
        0.5,
        {"amount": 12.5, "country": None},
    )


def test_a_request_is_stored_once_per_event_and_comes_back_as_it_went(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    r = request()
    assert outbox.add(r, "reviews")
    assert not outbox.add(request(), "reviews")  # chosen again after a restart
    assert outbox.add(sample_notification(NOW), "reviews")  # another id: both kinds kept
    rows = {row.id: row.notification for row in outbox.due("reviews", now=2e9)}
    assert rows[r.id] == r  # its rules, chance and features too
    # Carried with a partition's state, a request stays a request.
    carried = outbox.undelivered({"fraud"})
    assert {row.kind for row in carried} >= {"review"}
    successor = Outbox(tmp_path / "successor.sqlite")
    successor.adopt(carried)
    assert r in [row.notification for row in successor.due("reviews", now=2e9)]
    successor.close()
    outbox.close()


def test_an_outbox_from_before_requests_is_taken_on(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE outbox (id TEXT NOT NULL, sink TEXT NOT NULL, status TEXT NOT NULL, "
        "notification BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due REAL NOT NULL, "
        "created REAL NOT NULL, error TEXT, model TEXT, PRIMARY KEY (id, sink))"
    )
    db.commit()
    db.close()
    outbox = Outbox(path)
    assert outbox.add(request(), "reviews")
    assert outbox.add(sample_notification(NOW), "hook")
    assert [type(r.notification).__name__ for r in outbox.due("reviews", 2e9)] == ["ReviewRequest"]
    assert [type(r.notification).__name__ for r in outbox.due("hook", 2e9)] == ["Notification"]
    outbox.close()


def test_requests_reach_review_sinks_and_a_review_sink_hears_no_alert(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    reviews = tmp_path / "reviews.jsonl"
    alerts = tmp_path / "alerts.jsonl"
    review_settings = ReviewSinkSettings(kind="review", path=reviews)
    file_settings = FileSinkSettings(kind="file", path=alerts)
    review_sink = RoutedSink(ReviewFile("reviews", reviews), review_settings)
    alert_sink = RoutedSink(FileSink("alerts", alerts), file_settings)
    router = Router([review_sink, alert_sink], [], outbox)
    assert router.route(sample_notification(NOW)) == 1  # to the file sink only
    outbox.add(request("e1"), "reviews")
    outbox.add(request("e2"), "reviews")
    outbox.add(request("e3"), "alerts")  # misrouted by hand: refused, not retried
    dispatcher = Dispatcher(outbox, [review_sink, alert_sink], Metrics(CollectorRegistry()))
    dispatcher.rng = random.Random(1)
    dispatcher.start()
    try:
        assert delivered(outbox, timeout=10)
    finally:
        dispatcher.stop()
    lines = [json.loads(line) for line in reviews.read_text().splitlines()]
    assert [line["event_id"] for line in lines] == ["e1", "e2"]
    assert lines[0] == {
        "id": "review:fraud:e1",
        "event_id": "e1",
        "model": "fraud",
        "version": "3",
        "time": "2027-01-15T08:00:00Z",
        "rules": {"uncertain": {"score": 0.51}, "baseline": {}},
        "probability": 0.5,
        "features": {"amount": 12.5, "country": None},
    }
    assert "review:" not in alerts.read_text()  # the alert went there, the request did not
    (dead,) = outbox.listed(status="dead")
    assert (dead.sink, dead.error) == ("alerts", "only a review sink takes review requests")
    outbox.close()


def test_a_review_file_appends_each_request_once(tmp_path: Path) -> None:
    sink = ReviewFile("reviews", tmp_path / "reviews.jsonl")
    assert isinstance(sink.request(request()), Delivered)
    assert isinstance(sink.request(request()), Delivered)  # sent again after a crash
    assert len((tmp_path / "reviews.jsonl").read_text().splitlines()) == 1
    refused = sink.send(sample_notification(NOW))
    assert isinstance(refused, DeliveryFailed)
    assert not refused.retryable


def test_a_review_sink_has_a_topic_or_a_path(tmp_path: Path) -> None:
    everything = Settings()
    topic = build_sink("r", ReviewSinkSettings(kind="review", topic="reviews"), everything)
    assert type(topic).__name__ == "ReviewTopic"
    with pytest.raises(ValueError, match="TOPIC or a PATH"):
        ReviewSinkSettings(kind="review")
    with pytest.raises(ValueError, match="TOPIC or a PATH"):
        ReviewSinkSettings(kind="review", topic="t", path=tmp_path / "r.jsonl")


def test_rules_need_a_review_sink_and_a_model_that_is_not_spread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = '{"unsure": {"score_between": [0.4, 0.6]}}'
    with pytest.raises(ConfigError, match="need a sink of kind review"):
        load_settings(review={"rules": json.loads(rule)})
    monkeypatch.setenv("STREAMWATCH_MODELS__FRAUD__REVIEW__RULES", rule)
    with pytest.raises(ConfigError, match="need a sink of kind review"):
        load_settings()
    monkeypatch.setenv("STREAMWATCH_SINKS__REVIEWS__KIND", "review")
    monkeypatch.setenv("STREAMWATCH_SINKS__REVIEWS__PATH", str(tmp_path / "r.jsonl"))
    settings = load_settings()
    assert settings.review.rules == {}
    assert list(settings.for_model("fraud").review.rules) == ["unsure"]
    monkeypatch.setenv("STREAMWATCH_STATE__SPREAD_MODELS", '["fraud"]')
    monkeypatch.setenv("STREAMWATCH_STATE__CHANGELOG_TOPIC", "changes")
    monkeypatch.setenv("STREAMWATCH_WINDOW__MODE", "time")
    monkeypatch.setenv("STREAMWATCH_REFERENCE__PATH", str(tmp_path / "ref.jsonl"))
    with pytest.raises(ConfigError, match="not for spread models"):
        load_settings()


def test_a_rule_is_checked_when_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWATCH_REVIEW__RULES__UNSURE__SCORE_BETWEEN", "[0.7, 0.3]")
    with pytest.raises(ConfigError, match="STREAMWATCH_REVIEW__RULES"):
        load_settings()
    monkeypatch.setenv("STREAMWATCH_REVIEW__RULES__UNSURE__SCORE_BETWEEN", "[0.3, 0.7]")
    monkeypatch.setenv("STREAMWATCH_REVIEW__RULES__UNSURE__WHILE_ALERT", "ok")
    with pytest.raises(ConfigError, match="warning or critical"):
        load_settings()
