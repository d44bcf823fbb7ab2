"""Decoded events by model, predictions apart from labels."""

from __future__ import annotations

from dataclasses import dataclass

from streamwatch.events import Event, EventColumns
from streamwatch.events.columns import IntArray


@dataclass(slots=True)
class ModelEvents:
    predictions: EventColumns
    labels: list[Event]  # label events and predictions that came with their label
    positions: IntArray  # of all its events in the batch


def by_model(events: EventColumns) -> dict[str, ModelEvents]:
    """Events grouped by model id (in the order models first appear), in arrival order
    within each group. Labels become event objects (the join keeps them one by one)."""
    routed = {}
    for model_id, rows in events.rows_by_model().items():
        predictions = rows[~events.is_label[rows]]
        labelled = rows[events.labelled[rows]]
        routed[model_id] = ModelEvents(
            events if len(predictions) == events.n else events.take(predictions),
            events.take(labelled).labels() if len(labelled) else [],
            rows,
        )
    return routed
