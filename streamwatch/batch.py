"""Columnar batches: one model's events as numpy columns, the only input detectors see.

A column's kind (numeric or categorical) is fixed per model the first time the column
carries a value, by a :class:`Schema`; later values of the other kind count as missing.
A feature is numeric when its first value is a number. The ``prediction`` output is a
class when the model gives scores or probabilities, or its predictions are strings or
booleans; otherwise it is a regression output, numeric even when a value is whole.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from streamwatch.events import Event

if TYPE_CHECKING:
    from streamwatch.config import Settings, Task

Kind = Literal["numeric", "categorical"]
FloatArray = NDArray[np.float64]
ObjectArray = NDArray[np.object_]
Index = NDArray[np.intp] | NDArray[np.bool_]

MAX_PROBABILITY_CLASSES = 32
MAX_SEGMENTS = 16
MAX_NAME_CHARS = 256
# Larger magnitudes are input errors, and their squares would overflow the moments.
MAX_MAGNITUDE = 1e100
_NUMBERS = frozenset({float, int, type(None)})
_TEXT = frozenset({str, type(None)})
_FIELDS = attrgetter("timestamp", "event_id", "latency_ms", "error", "features")


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

    def build(self, events: Sequence[Event]) -> Batch:
        """Turn decoded prediction events of one model into a columnar batch."""
        n = len(events)
        if n == 0:
            return Batch(np.empty(0), Columns(), Columns(), np.empty(0, np.object_))
        # The per-event fields, column by column, read in C.
        timestamps, ids, latency, error, rows = zip(*map(_FIELDS, events), strict=True)
        if set(map(type, timestamps)) <= _NUMBERS:  # epoch milliseconds
            event_time = np.array(timestamps, dtype=np.float64) / 1000.0
        else:
            event_time = np.fromiter((e.epoch_seconds for e in events), np.float64, n)
        features = self._columns(self.features, rows, self.admit(set().union(*rows)))
        if "prediction" not in self.outputs:
            self._prediction_kind(events)
        outputs = self._columns(self.outputs, [_outputs(e) for e in events], None)
        event_ids = np.empty(n, dtype=np.object_)
        event_ids[:] = list(map(str, ids))
        operational = Columns(
            {
                "latency_ms": np.array(latency, dtype=np.float64),  # None: NaN
                "error": np.array(error, dtype=np.float64),  # True 1, False 0
            }
        )
        return Batch(event_time, features, outputs, event_ids, operational, self._segments(events))

    def _segments(self, events: Sequence[Event]) -> Columns:
        rows = [e.segments or {} for e in events]
        names = set().union(*rows)
        for name in sorted(names - self.segments):
            if len(self.segments) < MAX_SEGMENTS and len(name) <= MAX_NAME_CHARS:
                self.segments.add(name)
        return Columns(
            {},
            {name: _categorical([row.get(name) for row in rows]) for name in names & self.segments},
        )

    def _prediction_kind(self, events: Sequence[Event]) -> None:
        predictions = [e for e in events if e.prediction is not None]
        if not predictions:
            return
        classifier = any(
            e.score is not None or e.probabilities or type(e.prediction) in (str, bool)
            for e in predictions
        )
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

    def _columns(
        self,
        kinds: dict[str, Kind],
        rows: Sequence[Mapping[str, object]],
        names: set[str] | None,
    ) -> Columns:
        if names is None:
            names = set().union(*rows)
        columns = Columns()
        ordered = sorted(names)
        for name, values in zip(ordered, _transpose(rows, ordered), strict=True):
            kind = kinds.get(name) or _infer_kind(values)
            if kind is None:
                continue  # no value yet: the column's kind is still unknown
            kinds[name] = kind
            if kind == "numeric":
                numbers = columns.numeric[name] = _numeric(values)
                missing = np.isnan(numbers)
            else:
                labels = columns.categorical[name] = _categorical(values)
                missing = labels == None  # noqa: E711
            # Cheap check first (both counts run in C): more missing than absent values
            # means some were there but of the wrong type.
            if int(missing.sum()) > values.count(None):
                present = np.fromiter((v is not None for v in values), np.bool_, len(values))
                columns.wrong_type[name] = present & missing
        return columns


def _transpose(rows: Sequence[Mapping[str, object]], names: list[str]) -> list[Sequence[object]]:
    """The rows' values, column by column (None where a row lacks the name). Rows that
    all carry every name, the usual case, are read in C by one ``itemgetter`` each."""
    if len(names) > 1 and rows:
        try:
            return list(zip(*map(itemgetter(*names), rows), strict=True))
        except KeyError:
            pass  # some row lacks a name: look each value up
    return [[row.get(name) for row in rows] for name in names]


def _outputs(event: Event) -> dict[str, object]:
    out: dict[str, object] = {}
    if event.score is not None:
        out["score"] = event.score
    if event.prediction is not None:
        # A boolean class is 1 or 0, as its label will be (detectors.performance).
        prediction = event.prediction
        out["prediction"] = int(prediction) if type(prediction) is bool else prediction
    if event.probabilities:
        for i, (cls, p) in enumerate(event.probabilities.items()):
            if i == MAX_PROBABILITY_CLASSES:
                break
            out[f"probability[{cls}]"] = p
    return out


def _infer_kind(values: Sequence[object]) -> Kind | None:
    for v in values:
        if v is None:
            continue
        # A float is a measurement; a string, bool or int output is a class label.
        return "numeric" if type(v) is float else "categorical"
    return None


def _numeric(values: Sequence[object]) -> FloatArray:
    if set(map(type, values)) <= _NUMBERS:
        column = np.array(values, dtype=np.float64)  # None becomes NaN
    else:  # a string or bool among numbers counts as missing, however it is batched
        column = np.array([v if type(v) in (float, int) else np.nan for v in values], np.float64)
    column[~(np.abs(column) < MAX_MAGNITUDE)] = np.nan
    return column


def _categorical(values: Sequence[object]) -> ObjectArray:
    column = np.empty(len(values), dtype=np.object_)
    # Strings are taken as they are (overlong ones are refused once per category, when
    # the vocabulary admits it); anything else is converted value by value.
    column[:] = values if set(map(type, values)) <= _TEXT else [_category(v) for v in values]
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
