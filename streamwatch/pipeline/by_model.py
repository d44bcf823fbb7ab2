"""Decoded events by model, predictions apart from labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from streamwatch.events import Event


@dataclass(slots=True)
class ModelEvents:
    predictions: list[Event] = field(default_factory=list)
    labels: list[Event] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # of all its events in the batch


def by_model(events: Sequence[Event]) -> dict[str, ModelEvents]:
    """Events grouped by model id, in arrival order within each group."""
    routed: dict[str, ModelEvents] = {}
    for position, event in enumerate(events):
        group = routed.get(event.model_id)
        if group is None:
            group = routed[event.model_id] = ModelEvents()
        if event.is_label:
            group.labels.append(event)
        else:
            group.predictions.append(event)
            if event.label is not None:  # a prediction that came with its label
                group.labels.append(event)
        group.positions.append(position)
    return routed
