"""Which columns of a table (Parquet, CSV) are which parts of an event.

A table of logged predictions, or a training set, holds one event per row. The
defaults are the event's own field names, so a table written from events needs no
setting. A column a setting names (other than the default) must be in the table
(events/table.py checks each file's columns at start, and names the setting and the
column); a default column that is not there means the table has no such field, and
one that ``FEATURES``, ``SEGMENTS`` or ``IGNORE`` names is what that list says (a credit
``score`` among the features). Every column that is nothing else is a feature, unless
``FEATURES`` lists them or ``IGNORE`` leaves them out.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from streamwatch.config.base import Section

# The fields a table may map, and the event's name of each (the setting's default).
FIELDS = (
    "event_id",
    "model_id",
    "timestamp",
    "model_version",
    "prediction",
    "score",
    "label",
    "latency_ms",
    "error",
)


class TableSettings(Section):
    """Columns of Parquet and CSV files (reference, replay, backfill) as event fields."""

    event_id: str = Field("event_id", description="the column of event ids (text or integers)")
    model_id: str = Field("model_id", description="the column of model ids")
    model: str | None = Field(
        None, description="the model of every row, for a table with no model column"
    )
    timestamp: str = Field(
        "timestamp", description="event time: a timestamp column, RFC 3339 text, or numbers"
    )
    timestamp_unit: Literal["s", "ms", "us", "ns"] = Field(
        "ms", description="the unit of a numeric timestamp column since the epoch"
    )
    model_version: str = Field("model_version", description="the column of model versions")
    prediction: str = Field("prediction", description="the predicted class or value")
    score: str = Field("score", description="the positive class's probability (binary)")
    probabilities: dict[str, str] = Field(
        default_factory=dict,
        description='class -> its probability column, e.g. {"cat": "p_cat", "dog": "p_dog"}',
    )
    label: str = Field("label", description="the true outcome, where the row has it")
    latency_ms: str = Field("latency_ms", description="the column of latencies in ms")
    error: str = Field("error", description="the column that marks failed predictions")
    segments: list[str] = Field(
        default_factory=list, description="columns that are slice attributes, not features"
    )
    features: list[str] | None = Field(
        None, description="the feature columns; default: every column that is nothing else"
    )
    ignore: list[str] = Field(
        default_factory=list, description="columns that are neither features nor fields"
    )

    @model_validator(mode="after")
    def _each_column_once(self) -> TableSettings:
        """A column is one thing; a list naming a field's default column (``score`` as a
        feature) takes it from the field."""
        named = list(self.explicit().values()) + list(self.probabilities.values())
        named += self.segments + (self.features or [])
        twice = sorted({c for c in named if named.count(c) > 1})
        if twice:
            raise ValueError(f"columns {twice} are mapped to more than one field")
        return self

    def explicit(self) -> dict[str, str]:
        """The fields set to another column than their default (it must be there)."""
        fields = type(self).model_fields
        return {f: getattr(self, f) for f in FIELDS if getattr(self, f) != fields[f].default}
