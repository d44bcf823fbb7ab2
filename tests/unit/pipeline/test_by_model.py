"""Decoded events by model (by_model.py): grouped by model id in arrival order,
predictions apart from labels, and a prediction that came with its label in both."""

from __future__ import annotations

from streamwatch.events import EventColumns, Message, decode, decode_batch
from streamwatch.pipeline.by_model import by_model
from tests.factories import engine_fed, event, origin

LIMIT = 1 << 20


def decoded(*raws: bytes) -> EventColumns:
    result = decode_batch([Message(raw, origin(i)) for i, raw in enumerate(raws)], LIMIT)
    assert result.bad == []
    assert result.columns.n == len(raws)
    return result.columns


def test_events_are_grouped_by_model_in_arrival_order_predictions_apart_from_labels() -> None:
    events = decoded(
        event("a1", "a", prediction=1),
        event("b1", "b", score=0.2),
        event("a2", "a", score=0.9),
        event("a1", "a", label=0),  # a label event: no prediction, score or probabilities
        event("b1", "b", label=1),
    )
    groups = by_model(events)
    assert list(groups) == ["a", "b"]
    assert [e.event_id for e in groups["a"].predictions.events()] == ["a1", "a2"]
    assert [e.label for e in groups["a"].labels] == [0]
    assert groups["a"].positions.tolist() == [0, 2, 3]  # where its events are in the batch
    assert [e.event_id for e in groups["b"].predictions.events()] == ["b1"]
    assert [e.label for e in groups["b"].labels] == [1]
    assert groups["b"].positions.tolist() == [1, 4]
    assert by_model(decoded()) == {}


def test_a_prediction_that_came_with_its_label_is_a_prediction_and_a_label() -> None:
    raw = event("e1", "m", prediction=1, score=0.7, label=1)
    carried = decode(raw, origin(0), LIMIT)
    group = by_model(decoded(raw))["m"]
    assert group.predictions.events() == [carried]
    assert group.labels == [carried]
    assert group.positions.tolist() == [0]  # one event in the batch, counted once


def test_labels_carried_on_prediction_events_are_joined() -> None:
    lines = [
        event(f"e{i}", timestamp=i * 100, prediction=1, score=0.7, label=1) for i in range(1000)
    ]
    e = engine_fed(lines)
    assert e.metrics.total("streamwatch_label_events", outcome="joined") == 1000
