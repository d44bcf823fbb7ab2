"""The columnar path: a batch read by Arrow (reader.py) into event columns, no object
per event. It vouches only for what it can check in columns; every other message goes
to the exact path (exact.py), which decides.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamwatch.events.columns import (
    MAX_BATCH_FEATURES,
    MAX_PROBABILITY_CLASSES,
    BoolArray,
    EventColumns,
    FloatArray,
    IntArray,
    ObjectArray,
    RawColumns,
    objects,
)
from streamwatch.events.polled import Polled
from streamwatch.events.schema import (
    MAX_CATEGORY,
    MAX_CLASSES,
    MAX_EPOCH_MS,
    MAX_FEATURES,
    MAX_LATENCY_MS,
    MAX_SEGMENT_KEYS,
    MAX_TEXT,
)

_EXACT_INTS = 2.0**53  # past this, a float no longer tells the integer it was written as


def columns(
    rows: pa.StructArray, polled: Polled, at: IntArray, latest: float
) -> tuple[EventColumns, BoolArray]:
    """The rows (messages ``at`` of ``polled``) as event columns, and the rows to hand
    to the exact path instead."""
    n = len(rows)
    check = _Check(n)
    if _width(rows.type) > MAX_BATCH_FEATURES:  # too wide for columns: one by one
        return EventColumns.of_events([], polled), np.ones(n, np.bool_)
    fields = dict(zip(rows.type.names, rows.flatten(), strict=True))

    def field(name: str) -> pa.Array:  # null where the row lacks it
        values = fields.get(name)
        return pa.nulls(n) if values is None else values

    event_id, model_id, stamps = field("event_id"), field("model_id"), field("timestamp")
    for required in (event_id, model_id, stamps):
        check.rows(~_valid(required))
    check.text(event_id, allow_int=True)
    check.text(model_id)
    version = field("model_version")
    check.text(version, allow_int=True)
    check.text(field("source"))  # a label's; the exact path reads it
    event_time = check.numbers(stamps, 0.0, MAX_EPOCH_MS) / 1000.0
    check.rows(event_time > latest)  # ahead of the clock: the exact path tells why

    prediction, label = field("prediction"), field("label")
    score, probabilities = field("score"), field("probabilities")
    for output in (prediction, label):
        check.output(output)
    score_values = check.numbers(score, 0.0, 1.0)
    probability = check.struct(probabilities, MAX_CLASSES, text_names=True)
    if len(probability) > MAX_PROBABILITY_CLASSES:  # which come first is the event's order
        check.rows(_valid(probabilities))
    outputs: RawColumns = {}
    if _valid(score).any():
        outputs["score"] = score_values
    if _valid(prediction).any():
        outputs["prediction"] = _output(prediction)
    has_probability = np.zeros(n, np.bool_)
    for name, values in probability.items():
        outputs[f"probability[{name}]"] = check.numbers(values, 0.0, 1.0)
        has_probability |= _valid(values)

    no_output = ~(_valid(prediction) | _valid(score) | _valid(probabilities) | _valid(label))
    check.rows(no_output)  # the exact path's error says so
    is_label = ~(_valid(prediction) | _valid(score) | _valid(probabilities))
    text_prediction = pa.types.is_string(prediction.type) or pa.types.is_boolean(prediction.type)
    classifier = _valid(score) | has_probability | (_valid(prediction) & text_prediction)

    features: RawColumns = {
        name: check.feature(values)
        for name, values in check.struct(field("features"), MAX_FEATURES).items()
        if _valid(values).any()
    }
    segments: RawColumns = {
        name: check.segment(values)
        for name, values in check.struct(
            field("segments"), MAX_SEGMENT_KEYS, text_names=True
        ).items()
        if _valid(values).any()
    }
    latency = check.numbers(field("latency_ms"), 0.0, MAX_LATENCY_MS)
    error = field("error")
    if not pa.types.is_boolean(error.type):
        check.rows(_valid(error))
    for values in fields.values():  # NaN and Infinity are Arrow's, not JSON's
        check.rows(_not_finite(values))

    model = _model_codes(model_id)
    columns = EventColumns(
        polled,
        at,
        model[0],
        model[1],
        _text(event_id),
        event_time,
        _text(version),
        is_label,
        _valid(label),
        classifier,
        latency,
        _floats(error) if pa.types.is_boolean(error.type) else np.full(n, np.nan),
        features,
        outputs,
        segments,
    )
    return columns, check.exact


class _Check:
    """The rows found so far that the exact path must decide, and the checks."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.exact = np.zeros(n, np.bool_)

    def rows(self, mask: BoolArray) -> None:
        self.exact |= mask

    def text(self, values: pa.Array, allow_int: bool = False, longest: int = MAX_TEXT) -> None:
        """Text of 1 to ``longest`` characters (or an integer, where allowed)."""
        if pa.types.is_string(values.type):
            length = pc.utf8_length(values)
            self.rows(_true(pc.or_(pc.less(length, 1), pc.greater(length, longest))))
        elif not (pa.types.is_null(values.type) or (allow_int and pa.types.is_int64(values.type))):
            self.rows(_valid(values))

    def numbers(self, values: pa.Array, low: float, high: float) -> FloatArray:
        """A number within [low, high], as floats (a row with anything else: exact)."""
        if not (pa.types.is_float64(values.type) or pa.types.is_int64(values.type)):
            if not pa.types.is_null(values.type):
                self.rows(_valid(values))
            return np.full(self.n, np.nan)
        floats = _floats(values)
        with np.errstate(invalid="ignore"):
            self.rows(_valid(values) & ~((floats >= low) & (floats <= high)))
        return floats

    def output(self, values: pa.Array) -> None:
        """A prediction or label: a class name, an integer, a number or a boolean."""
        kind = values.type
        if pa.types.is_string(kind):
            self.rows(_true(pc.greater(pc.utf8_length(values), MAX_CATEGORY)))
        elif pa.types.is_float64(kind):
            floats = _floats(values)
            with np.errstate(invalid="ignore"):
                self.rows((np.abs(floats) >= _EXACT_INTS) & (floats == np.round(floats)))
        elif not (pa.types.is_int64(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)):
            self.rows(_valid(values))

    def struct(self, values: pa.Array, most: int, text_names: bool = False) -> dict[str, pa.Array]:
        """An object of at most ``most`` names (1 to 256 characters each, where
        ``text_names``), as its fields (null where the object is)."""
        if pa.types.is_null(values.type):
            return {}
        if not pa.types.is_struct(values.type):
            self.rows(_valid(values))
            return {}
        names = [values.type.field(i).name for i in range(values.type.num_fields)]
        if len(names) > most or (text_names and not all(0 < len(n) <= MAX_TEXT for n in names)):
            self.rows(_valid(values))
            return {}
        return dict(zip(names, values.flatten(), strict=True))

    def feature(self, values: pa.Array) -> FloatArray | ObjectArray:
        kind = values.type
        if pa.types.is_float64(kind) or pa.types.is_int64(kind):
            return _floats(values)
        if pa.types.is_string(kind):
            return values.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]
        if pa.types.is_boolean(kind):
            return objects(values.to_pylist())
        self.rows(_valid(values))
        return np.full(self.n, np.nan)

    def segment(self, values: pa.Array) -> ObjectArray:
        kind = values.type
        if pa.types.is_string(kind):
            self.rows(_true(pc.greater(pc.utf8_length(values), MAX_CATEGORY)))
        elif not (pa.types.is_int64(kind) or pa.types.is_boolean(kind)):
            self.rows(_valid(values))
            return np.full(self.n, None, np.object_)
        return objects(values.to_pylist())


def _valid(values: pa.Array) -> BoolArray:
    if values.null_count == 0:
        return np.ones(len(values), np.bool_)
    return values.is_valid().to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _true(mask: pa.Array) -> BoolArray:
    """A boolean column with null as False."""
    return mask.fill_null(False).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _floats(values: pa.Array) -> FloatArray:
    cast = pc.cast(values, pa.float64(), safe=False)  # int64 as Python's float() rounds
    return cast.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _output(values: pa.Array) -> FloatArray | ObjectArray:
    """A prediction column as the exact path gives it: classes as text, integers and
    booleans (1, 0) as integers, numbers as floats."""
    if pa.types.is_float64(values.type):
        return _floats(values)
    if pa.types.is_string(values.type):
        return values.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]
    if pa.types.is_boolean(values.type):
        values = pc.cast(values, pa.int64())
    return objects(values.to_pylist())


def _text(values: pa.Array) -> ObjectArray:
    if pa.types.is_int64(values.type):
        values = pc.cast(values, pa.string())
    if not pa.types.is_string(values.type):
        return np.full(len(values), None, np.object_)
    return values.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _model_codes(model_id: pa.Array) -> tuple[np.ndarray, list[str]]:
    if not pa.types.is_string(model_id.type):
        return np.zeros(len(model_id), np.intp), [""]
    encoded = pc.dictionary_encode(model_id.fill_null(""))
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    return codes, encoded.dictionary.to_pylist()


def _width(shape: pa.DataType) -> int:
    """Fields at every level of a shape."""
    width, pending = 0, [shape]
    while pending:
        kind = pending.pop()
        if pa.types.is_struct(kind):
            width += kind.num_fields
            pending += [f.type for f in kind]
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            pending.append(kind.value_type)
    return width


def _not_finite(values: pa.Array) -> BoolArray:
    """Rows holding NaN or an infinity anywhere (Arrow reads them; JSON has none)."""
    mask = np.zeros(len(values), np.bool_)
    pending: list[tuple[pa.Array, IntArray | None]] = [(values, None)]  # element -> row
    while pending:  # not recursive: a message may nest hundreds of levels
        array, rows = pending.pop()
        kind = array.type
        if pa.types.is_floating(kind):
            bad = np.flatnonzero(_true(pc.invert(pc.is_finite(array))))
            mask[bad if rows is None else rows[bad]] = True
        elif pa.types.is_struct(kind):
            pending += [(child, rows) for child in array.flatten()]
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
            pending.append((pc.list_flatten(array), parents if rows is None else rows[parents]))
    return mask
