"""A batch's good events as columns, in arrival order: what both paths of decoding
give (columnar.py from Arrow, :meth:`EventColumns.of_events` from msgspec's events).

Values stay as the event carried them ("raw"): a column is floats where every value is
a number (NaN: no value), or objects (``None``: no value). The model's schema decides
later what each column means (batch.py). A name is in a batch where an event of the
batch has a value for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from streamwatch.events.exact import decode_fast
from streamwatch.events.polled import Polled, Written
from streamwatch.events.schema import BadEvent, BadReason, Event, Message, Origin

FloatArray = NDArray[np.float64]
ObjectArray = NDArray[np.object_]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]
Raw = FloatArray | ObjectArray  # floats: NaN is no value; objects: None is no value
RawColumns = dict[str, Raw]

log = logging.getLogger("streamwatch.events")
MAX_PROBABILITY_CLASSES = 32  # of an event's classes, the first this many are columns
MAX_BATCH_FEATURES = 1024  # feature names a batch is held as columns for
_FIELDS = attrgetter(
    "event_id", "model_id", "timestamp", "model_version", "latency_ms", "error", "label"
)
_NUMBERS = frozenset({float, type(None)})
_NO_ORIGIN = Origin("", -1, -1)


@dataclass(slots=True)
class EventColumns:
    """Good events as columns. ``model`` holds codes into ``models``; ``classifier``
    marks events whose outputs say the model is a classifier (a score, a probability, a
    text or boolean prediction); ``outputs`` are named as the batch's (batch.py)."""

    polled: Polled  # the batch the events came in
    at: IntArray  # each event's message in it
    model: IntArray
    models: list[str]
    event_id: ObjectArray  # as text
    event_time: FloatArray  # epoch seconds
    version: ObjectArray  # as text, or None
    is_label: BoolArray
    labelled: BoolArray
    classifier: BoolArray
    latency_ms: FloatArray
    error: FloatArray  # 1, 0, NaN
    # None: more names than columns are kept for (``MAX_BATCH_FEATURES``); the model's
    # schema then reads the few it tracks from the events themselves.
    features: RawColumns | None = field(default_factory=dict)
    outputs: RawColumns = field(default_factory=dict)
    segments: RawColumns = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.at)

    @property
    def raw(self) -> list[bytes]:
        values = self.polled.values
        if isinstance(values, Written):
            return values.many(self.at)
        return [values[i] for i in self.at.tolist()]

    def bad(self, i: int | np.integer[Any], reason: BadReason, detail: str) -> BadEvent:
        """Event ``i`` refused after all (its model is not watched here, say)."""
        at = int(self.at[i])
        return BadEvent(reason, detail, self.polled.values[at], self.polled.origin(at))

    def events(self) -> list[Event]:
        """The events as objects, decoded again (exactly) from their bytes: for what is
        rare (labels, held-back warm-up events, challengers, spread models)."""
        raws = self.raw
        try:
            return list(map(decode_fast, raws))
        except (ValueError, RecursionError):  # the two paths disagree: a bug, not a crash
            events = []
            for raw in raws:
                try:
                    events.append(decode_fast(raw))
                except (ValueError, RecursionError) as exc:
                    log.error(
                        "columns vouched for a message the exact path refuses",
                        extra={"error": str(exc), "raw": raw[:200].decode(errors="replace")},
                    )
            return events

    def labels(self) -> list[Event]:
        """The events' labels as events: a table's read from its columns (only what the
        label join reads), others decoded from their bytes."""
        values = self.polled.values
        if isinstance(values, Written) and values.timed:
            return values.labels(self.at)
        return self.events()

    def take(self, index: IntArray | BoolArray) -> EventColumns:
        return EventColumns(
            self.polled,
            self.at[index],
            self.model[index],
            self.models,
            self.event_id[index],
            self.event_time[index],
            self.version[index],
            self.is_label[index],
            self.labelled[index],
            self.classifier[index],
            self.latency_ms[index],
            self.error[index],
            None if self.features is None else _take(self.features, index),
            _take(self.outputs, index),
            _take(self.segments, index),
        )

    def rows_by_model(self) -> dict[str, IntArray]:
        """Each model's rows, models in the order they first appear."""
        if len(self.models) == 1:
            return {self.models[0]: np.arange(self.n)} if self.n else {}
        groups = [
            (rows, m)
            for code, m in enumerate(self.models)
            if len(rows := np.flatnonzero(self.model == code))
        ]
        return {m: rows for rows, m in sorted(groups, key=lambda group: int(group[0][0]))}

    @staticmethod
    def concat(parts: Sequence[EventColumns]) -> EventColumns:
        """Parts of one batch, one after another (their model codes made one)."""
        if len(parts) == 1:
            return parts[0]
        assert all(p.polled is parts[0].polled for p in parts), "parts of one batch"
        known: dict[str, int] = {}
        codes = []
        for part in parts:
            remap = np.array([known.setdefault(m, len(known)) for m in part.models], np.intp)
            codes.append(remap[part.model] if len(remap) else part.model)
        sizes = [p.n for p in parts]

        def joined(name: str) -> Any:
            return np.concatenate([getattr(p, name) for p in parts])

        return EventColumns(
            parts[0].polled,
            joined("at"),
            np.concatenate(codes),
            list(known),
            joined("event_id"),
            joined("event_time"),
            joined("version"),
            joined("is_label"),
            joined("labelled"),
            joined("classifier"),
            joined("latency_ms"),
            joined("error"),
            _concat_features([p.features for p in parts], sizes),
            _concat([p.outputs for p in parts], sizes),
            _concat([p.segments for p in parts], sizes),
        )

    @classmethod
    def of_events(
        cls, events: Sequence[Event], polled: Polled | None = None, at: IntArray | None = None
    ) -> EventColumns:
        """Events decoded one by one, as columns: from messages ``at`` of ``polled``
        (without them, their bytes encoded again: for tests and events held as objects)."""
        n = len(events)
        if polled is None:
            polled = Polled.of([Message(msgspec.json.encode(e), _NO_ORIGIN) for e in events])
        at = np.arange(n) if at is None else at
        if n == 0:
            return _empty(polled)
        ids, model_ids, stamps, versions, latency, error, labels = zip(
            *map(_FIELDS, events), strict=True
        )
        known: dict[str, int] = {}
        model = np.fromiter((known.setdefault(m, len(known)) for m in model_ids), np.intp, n)
        if all(type(t) in (int, float) for t in stamps):  # epoch milliseconds
            event_time = np.array(stamps, dtype=np.float64) / 1000.0
        else:
            event_time = np.fromiter(
                (t.timestamp() if isinstance(t, datetime) else t / 1000.0 for t in stamps),
                np.float64,
                n,
            )
        outputs = [_outputs(e) for e in events]
        return cls(
            polled,
            at,
            model,
            list(known),
            objects(list(map(str, ids))),
            event_time,
            objects([None if v is None else str(v) for v in versions]),
            np.fromiter((e.is_label for e in events), np.bool_, n),
            np.fromiter((v is not None for v in labels), np.bool_, n),
            np.fromiter((_classifier(e) for e in events), np.bool_, n),
            np.array(latency, dtype=np.float64),  # None: NaN
            np.array(error, dtype=np.float64),  # True 1, False 0
            _features([e.features or {} for e in events]),
            columns_of(outputs),
            columns_of([e.segments or {} for e in events]),
        )


def with_values(columns: RawColumns) -> set[str]:
    """The names of the columns that hold a value."""
    return {name for name, values in columns.items() if present(values).any()}


def present(values: Raw) -> BoolArray:
    if values.dtype == np.float64:
        return ~np.isnan(values)
    return values != None  # type: ignore[no-any-return]  # noqa: E711 (elementwise)


def to_objects(values: Raw) -> ObjectArray:
    """A column as objects, ``None`` where it has no value."""
    if values.dtype != np.float64:
        return values  # type: ignore[return-value]
    objects = values.astype(np.object_)
    objects[np.isnan(values)] = None
    return objects


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
            if p is not None:
                out[f"probability[{cls}]"] = p
    return out


def _classifier(event: Event) -> bool:
    return (
        event.score is not None
        or any(p is not None for p in (event.probabilities or {}).values())
        or type(event.prediction) in (str, bool)
    )


def _features(rows: Sequence[dict[str, Any]]) -> RawColumns | None:
    names = set().union(*rows)
    return None if len(names) > MAX_BATCH_FEATURES else _columns(rows, names)


def _concat_features(parts: Sequence[RawColumns | None], sizes: Sequence[int]) -> RawColumns | None:
    if any(p is None for p in parts) or len(set().union(*parts)) > MAX_BATCH_FEATURES:  # type: ignore[arg-type]
        return None
    return _concat(parts, sizes)  # type: ignore[arg-type]


def value_names(rows: Sequence[dict[str, Any]]) -> set[str]:
    """The names with a value in some row."""
    return {name for row in rows for name, value in row.items() if value is not None}


def columns_of(rows: Sequence[dict[str, Any]], names: set[str] | None = None) -> RawColumns:
    """Rows of name -> value as columns of ``names`` (all of them) that have a value
    somewhere."""
    return _columns(rows, set().union(*rows) if names is None else names)


def _columns(rows: Sequence[dict[str, Any]], names: set[str]) -> RawColumns:
    columns: RawColumns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if values.count(None) == len(values):
            continue
        if set(map(type, values)) <= _NUMBERS:
            columns[name] = np.array(values, dtype=np.float64)
        else:
            columns[name] = objects(values)
    return columns


def objects(values: Iterable[object]) -> ObjectArray:
    """Values as a column of objects (each kept as it is: no numpy conversion)."""
    values = list(values)
    array = np.empty(len(values), dtype=np.object_)
    array[:] = values
    return array


def _take(columns: RawColumns, index: IntArray | BoolArray) -> RawColumns:
    return {name: values[index] for name, values in columns.items()}


def _concat(parts: Sequence[RawColumns], sizes: Sequence[int]) -> RawColumns:
    out: RawColumns = {}
    for name in {name for part in parts for name in part}:
        pieces = [part.get(name) for part in parts]
        if all(p is None or p.dtype == np.float64 for p in pieces):
            out[name] = np.concatenate(
                [np.full(n, np.nan) if p is None else p for p, n in zip(pieces, sizes, strict=True)]
            )
        else:
            out[name] = np.concatenate(
                [
                    np.full(n, None, np.object_) if p is None else to_objects(p)
                    for p, n in zip(pieces, sizes, strict=True)
                ]
            )
    return out


def _empty(polled: Polled) -> EventColumns:
    objects, floats = np.empty(0, np.object_), np.empty(0, np.float64)
    flags, none = np.empty(0, np.bool_), np.empty(0, np.intp)
    return EventColumns(
        polled, none, none, [], objects, floats, objects, flags, flags, flags, floats, floats
    )
