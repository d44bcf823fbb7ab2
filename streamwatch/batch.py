"""Columnar batches: one model's events as numpy columns, the only input detectors see.

A column's kind (numeric or categorical) is fixed per model the first time the column
carries a value, by a :class:`Schema`; later values of the other kind count as missing.
A feature is numeric when its first value is a number. The ``prediction`` output is a
class when the model gives scores or probabilities, or its predictions are strings or
booleans; otherwise it is a regression output, numeric even when a value is whole.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from streamwatch.events import Event, EventColumns
from streamwatch.events.columns import (
    Raw,
    RawColumns,
    columns_of,
    present,
    to_objects,
    value_names,
    with_values,
)

if TYPE_CHECKING:
    from streamwatch.config import Settings, Task

Kind = Literal["numeric", "categorical"]
FloatArray = NDArray[np.float64]
ObjectArray = NDArray[np.object_]
Index = NDArray[np.intp] | NDArray[np.bool_]

MAX_SEGMENTS = 16
MAX_NAME_CHARS = 256
# Larger magnitudes are input errors, and their squares would overflow the moments.
MAX_MAGNITUDE = 1e100
_NUMBERS = frozenset({float, int, type(None)})
_TEXT = frozenset({str, type(None)})


@dataclass(slots=True)
class Columns:
    """Named columns of one batch: floats (NaN = missing), objects (None = missing).

    ``wrong_type`` marks, for the columns that had any, the values that were there but
    of the other kind (text in a numeric feature, say): missing, but told apart."""

    numeric: dict[str, FloatArray] = field(default_factory=dict)
    categorical: dict[str, ObjectArray] = field(default_factory=dict)
    wrong_type: dict[str, NDArray[np.bool_]] = field(default_factory=dict)

    def take(self, index: Index) -> Columns:
        return Columns(
            {k: v[index] for k, v in self.numeric.items()},
            {k: v[index] for k, v in self.categorical.items()},
            {k: v[index] for k, v in self.wrong_type.items()},
        )

    @staticmethod
    def concat(parts: Sequence[Columns], sizes: Sequence[int]) -> Columns:
        """Stack columns of consecutive batches; a column absent from a part is missing."""
        numeric = {name for p in parts for name in p.numeric}
        categorical = {name for p in parts for name in p.categorical}
        return Columns(
            {
                name: np.concatenate(
                    [
                        p.numeric.get(name, np.full(n, np.nan))
                        for p, n in zip(parts, sizes, strict=True)
                    ]
                )
                for name in numeric
            },
            {
                name: np.concatenate(
                    [
                        p.categorical.get(name, np.full(n, None, np.object_))
                        for p, n in zip(parts, sizes, strict=True)
                    ]
                )
                for name in categorical
            },
            {
                name: np.concatenate(
                    [
                        p.wrong_type.get(name, np.zeros(n, np.bool_))
                        for p, n in zip(parts, sizes, strict=True)
                    ]
                )
                for name in {name for p in parts for name in p.wrong_type}
            },
        )


@dataclass(slots=True)
class Batch:
    """Events of one model as columns: event time, features, and model outputs.

    ``event_ids`` serve the label join only; no detector keeps them."""

    event_time: FloatArray
    features: Columns
    outputs: Columns
    event_ids: ObjectArray | None = None
    operational: Columns = field(default_factory=Columns)  # latency_ms, error (0/1)
    segments: Columns = field(default_factory=Columns)  # slice attributes, categorical

    @property
    def n(self) -> int:
        return len(self.event_time)

    def take(self, index: Index) -> Batch:
        ids = None if self.event_ids is None else self.event_ids[index]
        return Batch(
            self.event_time[index],
            self.features.take(index),
            self.outputs.take(index),
            ids,
            self.operational.take(index),
            self.segments.take(index),
        )

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        sizes = [b.n for b in batches]
        ids = [b.event_ids for b in batches]
        return Batch(
            np.concatenate([b.event_time for b in batches]),
            Columns.concat([b.features for b in batches], sizes),
            Columns.concat([b.outputs for b in batches], sizes),
            None if any(i is None for i in ids) else np.concatenate(ids),  # type: ignore[arg-type]
            Columns.concat([b.operational for b in batches], sizes),
            Columns.concat([b.segments for b in batches], sizes),
        )


class Schema:
    """The kinds of one model's feature and output columns, fixed at first sight.

    At most ``max_columns`` feature columns are tracked, so that a producer sending
    ever-new feature names cannot grow the state without bound; names beyond the
    limit, and names longer than 256 characters, are ignored: counted (once per batch
    they appear in), never stored, for a set of them would grow without bound too.
    """

    def __init__(self, max_columns: int = 500, task: Task = "auto") -> None:
        self.features: dict[str, Kind] = {}
        self.outputs: dict[str, Kind] = {}
        if task != "auto":
            self.outputs["prediction"] = "categorical" if task == "classification" else "numeric"
        self.max_columns = max_columns
        self.ignored = 0  # names ignored, counted once per batch they come in
        self.segments: set[str] = set()  # segment keys, at most MAX_SEGMENTS

    @classmethod
    def of(cls, model_id: str, settings: Settings) -> Schema:
        """A model's schema, with its task where the settings name one."""
        performance = settings.detectors.performance
        return cls(settings.max_columns, performance.tasks.get(model_id, performance.task))

    def build(self, events: EventColumns | Sequence[Event]) -> Batch:
        """Turn decoded prediction events of one model into a columnar batch."""
        if not isinstance(events, EventColumns):
            events = EventColumns.of_events(events)
        if events.n == 0:
            return Batch(np.empty(0), Columns(), Columns(), np.empty(0, np.object_))
        if events.features is None:  # too wide for columns: the tracked ones from events
            rows = [e.features or {} for e in events.events()]
            names = self.admit(value_names(rows))
            features = self._columns(self.features, columns_of(rows, names), names)
        else:
            names = self.admit(with_values(events.features))
            features = self._columns(self.features, events.features, names)
        if "prediction" not in self.outputs:
            self._prediction_kind(events)
        outputs = self._columns(self.outputs, events.outputs, with_values(events.outputs))
        operational = Columns({"latency_ms": events.latency_ms, "error": events.error})
        segments = self._segments(events.segments)
        return Batch(events.event_time, features, outputs, events.event_id, operational, segments)

    def _segments(self, raw: RawColumns) -> Columns:
        names = with_values(raw)
        for name in sorted(names - self.segments):
            if len(self.segments) < MAX_SEGMENTS and len(name) <= MAX_NAME_CHARS:
                self.segments.add(name)
        return Columns(
            {}, {name: _categorical(to_objects(raw[name])) for name in names & self.segments}
        )

    def _prediction_kind(self, events: EventColumns) -> None:
        predictions = events.outputs.get("prediction")
        if predictions is None:
            return
        with_prediction = present(predictions)
        if with_prediction.any():
            classifier = bool(events.classifier[with_prediction].any())
            self.outputs["prediction"] = "categorical" if classifier else "numeric"

    def admit(self, names: set[str]) -> set[str]:
        """The names of ``names`` that are (or now become) feature columns: new ones in
        sorted order while there is room; the rest are counted as ignored."""
        new = sorted(names - self.features.keys())
        admitted = names.difference(new)
        room = self.max_columns - len(self.features)
        for name in new:
            if len(name) <= MAX_NAME_CHARS and room > 0:
                admitted.add(name)
                room -= 1
        self.ignored += len(names) - len(admitted)
        return admitted

    def _columns(self, kinds: dict[str, Kind], raw: RawColumns, names: set[str]) -> Columns:
        columns = Columns()
        for name in sorted(names):
            values = raw[name]
            kind = kinds.get(name) or _infer_kind(values)
            if kind is None:
                continue  # no value yet: the column's kind is still unknown
            kinds[name] = kind
            if kind == "numeric":
                numbers = columns.numeric[name] = _numeric(values)
                missing = np.isnan(numbers)
            else:
                labels = columns.categorical[name] = _categorical(to_objects(values))
                missing = labels == None  # noqa: E711
            # Cheap check first: more missing than absent values means some were there
            # but of the wrong type.
            had = present(values)
            if int(missing.sum()) > len(values) - int(had.sum()):
                columns.wrong_type[name] = had & missing
        return columns


def _infer_kind(values: Raw) -> Kind | None:
    if values.dtype == np.float64:
        return "numeric" if present(values).any() else None
    for v in values:
        if v is None:
            continue
        # A float is a measurement; a string, bool or int output is a class label.
        return "numeric" if type(v) is float else "categorical"
    return None


def _numeric(values: Raw) -> FloatArray:
    if values.dtype == np.float64:
        column: FloatArray = values.copy()  # type: ignore[assignment]
    elif set(map(type, values)) <= _NUMBERS:
        column = np.array(values.tolist(), dtype=np.float64)  # None becomes NaN
    else:  # a string or bool among numbers counts as missing, however it is batched
        column = np.array([v if type(v) in (float, int) else np.nan for v in values], np.float64)
    with np.errstate(invalid="ignore"):
        column[~(np.abs(column) < MAX_MAGNITUDE)] = np.nan
    return column


def _categorical(values: ObjectArray) -> ObjectArray:
    # Strings are taken as they are (overlong ones are refused once per category, when
    # the vocabulary admits it); anything else is converted value by value.
    if set(map(type, values)) <= _TEXT:
        return values
    column = np.empty(len(values), dtype=np.object_)
    column[:] = [_category(v) for v in values]
    return column


@functools.lru_cache(maxsize=4096, typed=True)  # one string per class, not one per event
def _category(value: object) -> str | None:
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is float and value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # a class label written as 1.0
    return None  # a fractional number, or nothing, where a category belongs
