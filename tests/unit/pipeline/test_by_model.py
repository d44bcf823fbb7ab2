"""Decoded events by model (by_model.py): grouped by model id in arrival order,
predictions apart from labels, and a prediction that came with its label in both."""

from __future__ import annotations

from streamwatch.events import Event, decode
from streamwatch.pipeline.by_model import by_model
from tests.factories import engine_fed, event, origin


def decoded(*raws: bytes) -> list[Event]:
    events = [decode(raw, origin(i), 1 << 20) for i, raw in enumerate(raws)]
    assert all(isinstance(e, Event) for e in events)
    return [e for e in events if isinstance(e, Event)]


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
    assert [e.event_id for e in groups["a"].predictions] == ["a1", "a2"]
    assert [e.label for e in groups["a"].labels] == [0]
    assert groups["a"].positions == [0, 2, 3]  # where its events are in the batch
    assert [e.event_id for e in groups["b"].predictions] == ["b1"]
    assert [e.label for e in groups["b"].labels] == [1]
    assert groups["b"].positions == [1, 4]
    assert by_model([]) == {}


def test_a_prediction_that_came_with_its_label_is_a_prediction_and_a_label() -> None:
    (carried,) = decoded(event("e1", "m", prediction=1, score=0.7, label=1))
    group = by_model([carried])["m"]
    assert group.predictions == [carried]
    assert group.labels == [carried]
    assert group.positions == [0]  # one event in the batch, counted once


def test_labels_carried_on_prediction_events_are_joined() -> None:
    lines = [
        event(f"e{i}", timestamp=i * 100, prediction=1, score=0.7, label=1) for i in range(1000)
    ]
    e = engine_fed(lines)
    assert e.metrics.total("streamwatch_label_events", outcome="joined") == 1000
