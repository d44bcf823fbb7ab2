"""A table's rows as event rows: the columns a :class:`TableSettings` maps, put into the
shape that Arrow reads a JSON event into, so that a table takes the columnar path of
decoding (columnar.py) with no Python per row.

Values are made what a JSON event would give: integers and decimals of a feature or a
score become floats, NaN and infinities are no value (JSON has neither), a timestamp
becomes epoch milliseconds, dictionary-encoded text becomes text, a model id text. A
column of a type no event field can hold (a date as a feature, a list) is refused at
start with its name.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from streamwatch.config.settings import env_name
from streamwatch.config.tables import FIELDS, TableSettings
from streamwatch.errors import ConfigError

_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_OUTPUTS = frozenset({"prediction", "label"})
_NUMBERS = frozenset({"score", "latency_ms"})
_TEXTS = frozenset({"event_id", "model_id", "model_version"})


@dataclass(frozen=True, slots=True)
class TableMapping:
    """Which column is which field, checked against a table's columns."""

    fields: dict[str, str]  # event field -> column
    probabilities: dict[str, str]  # class -> column
    features: list[str]
    segments: list[str]
    model: str | None  # of every row, where the table has no model column
    unit: float  # a numeric timestamp's unit, in milliseconds

    @classmethod
    def of(
        cls,
        schema: pa.Schema,
        table: TableSettings,
        where: str,
        partitions: frozenset[str] = frozenset(),
    ) -> TableMapping:
        """The mapping of ``table`` for columns ``schema`` (of ``where``, for errors);
        ``partitions``: columns of hive partitions, features only where listed."""
        names = set(schema.names)
        twice = sorted({n for n in schema.names if schema.names.count(n) > 1})
        _need(not twice, ("table",), f"{where} has columns {twice} more than once", names)
        explicit = table.explicit()
        for field, column in explicit.items():
            _need(column in names, ("table", field), f"column {column!r} is not in {where}", names)
        for cls_name, column in table.probabilities.items():
            detail = f"class {cls_name!r}: column {column!r} is not in {where}"
            _need(column in names, ("table", "probabilities"), detail, names)
        for setting in ("segments", "features", "ignore"):
            for column in getattr(table, setting) or []:
                detail = f"column {column!r} is not in {where}"
                _need(column in names, ("table", setting), detail, names)
        # A field takes the column of its name where the table has one, unless a list
        # names that column (a credit "score" among the features); a column set always.
        listed = set(table.features or []) | set(table.ignore) | set(table.segments)
        fields = {
            f: column
            for f in FIELDS
            if (column := getattr(table, f)) in names and (f in explicit or column not in listed)
        }
        if table.model is not None:
            fields.pop("model_id", None)
        required = ["event_id", "timestamp"] + ([] if table.model else ["model_id"])
        for field in required:
            detail = f"column {getattr(table, field)!r} is not in {where}"
            if field == "model_id":
                detail += " (a table of one model sets TABLE__MODEL)"
            _need(field in fields, ("table", field), detail, names)
        outputs = {"prediction", "score", "label"} & fields.keys()
        _need(
            bool(outputs or table.probabilities),
            ("table", "prediction"),
            f"{where} has no prediction, score, probability or label column",
            names,
        )
        taken = set(fields.values()) | set(table.probabilities.values()) | set(table.segments)
        taken |= partitions
        if table.model is not None:
            taken.add(table.model_id)  # a model column that TABLE__MODEL overrides
        features = (
            list(table.features)
            if table.features is not None
            else [c for c in schema.names if c not in taken and c not in table.ignore]
        )
        mapping = cls(
            fields,
            dict(table.probabilities),
            features,
            list(table.segments),
            table.model,
            _MS[table.timestamp_unit],
        )
        mapping._check_types(schema, where)
        return mapping

    def _check_types(self, schema: pa.Schema, where: str) -> None:
        def check(column: str, setting: tuple[str, ...], ok: bool, wanted: str) -> None:
            kind = schema.field(column).type
            ok = ok or pa.types.is_null(kind)  # no value in this file (yet): none is read
            detail = f"column {column!r} of {where} is {kind}, not {wanted}"
            _need(ok, setting, detail, set(schema.names))

        for field, column in self.fields.items():
            kind = _plain(schema.field(column).type)
            if field == "timestamp":
                ok = _is_number(kind) or pa.types.is_timestamp(kind) or pa.types.is_date(kind)
                check(column, ("table", field), ok or _is_text(kind), "a time")
            elif field in _TEXTS:
                check(column, ("table", field), _is_text(kind) or pa.types.is_integer(kind), "text")
            elif field in _NUMBERS:
                check(column, ("table", field), _is_number(kind), "a number")
            elif field == "error":
                check(column, ("table", field), pa.types.is_boolean(kind), "true or false")
            else:
                check(column, ("table", field), _is_value(kind), "a class or a number")
        for column in self.probabilities.values():
            ok = _is_number(_plain(schema.field(column).type))
            check(column, ("table", "probabilities"), ok, "a number")
        for column in self.features:
            ok = _is_value(_plain(schema.field(column).type))
            check(column, ("table", "features"), ok, "a number, text or true/false (a feature)")
        for column in self.segments:
            kind = _plain(schema.field(column).type)
            ok = _is_text(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)
            check(column, ("table", "segments"), ok, "text, an integer or true/false")

    def rows(self, table: pa.Table) -> pa.StructArray:
        """The table's rows as event rows (the struct Arrow reads JSON events into)."""
        n = table.num_rows
        arrays: dict[str, pa.Array] = {}
        for field, column in self.fields.items():
            values = _plain_values(table.column(column))
            if field == "timestamp":
                arrays[field] = self._milliseconds(values)
            elif field == "model_id":
                arrays[field] = pc.cast(values, pa.string())  # an id of 7 is "7"
            elif field in _TEXTS:
                arrays[field] = _text_or_int(values)
            elif field in _NUMBERS:
                arrays[field] = _floats(values)
            elif field in _OUTPUTS:
                arrays[field] = _output(values)
            else:
                arrays[field] = values
        if self.model is not None:
            arrays["model_id"] = pa.repeat(pa.scalar(self.model), n)
        if self.probabilities:
            arrays["probabilities"] = _struct(
                {k: _floats(_plain_values(table.column(c))) for k, c in self.probabilities.items()}
            )
        if self.features:
            arrays["features"] = _struct(
                {c: _feature(_plain_values(table.column(c))) for c in self.features}
            )
        if self.segments:
            arrays["segments"] = _struct(
                {c: _text_or_int(_plain_values(table.column(c))) for c in self.segments}
            )
        return _struct(arrays)

    def _milliseconds(self, values: pa.Array) -> pa.Array:
        """Event time as epoch milliseconds (a timestamp with no zone, or text with none,
        is UTC). Text Arrow cannot read as times stays text: decoding reads each such
        row as it reads an event's, and names the ones it refuses."""
        kind = values.type
        if _is_text(kind):
            parsed = _times(values)
            if parsed is None:
                return values
            values, kind = parsed, parsed.type
        if pa.types.is_date(kind):
            values = pc.cast(pc.cast(values, pa.date32()), pa.timestamp("s"))
            kind = values.type
        if pa.types.is_timestamp(kind):
            ticks = pc.cast(values, pa.int64())  # since the epoch (UTC), in the column's unit
            if kind.unit == "ms":
                return ticks
            floats = pc.cast(ticks, pa.float64(), safe=False)  # nanoseconds: past 2**53
            return _floats(pc.multiply(floats, _MS[kind.unit]))
        if pa.types.is_integer(kind) and self.unit == 1.0:
            return pc.cast(values, pa.int64())
        return _floats(pc.multiply(pc.cast(values, pa.float64()), self.unit))


def _times(text: pa.Array) -> pa.Array | None:
    for kind in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            return pc.cast(text, kind)
        except pa.ArrowInvalid:
            continue
    return None


def _need(ok: bool, setting: tuple[str, ...], detail: str, names: set[str]) -> None:
    if not ok:
        shown = ", ".join(sorted(names)[:20]) + (" ..." if len(names) > 20 else "")
        raise ConfigError(f"{env_name(setting)}: {detail} (its columns: {shown})")


def _plain(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _plain_values(values: pa.ChunkedArray) -> pa.Array:
    combined = values.combine_chunks()
    if pa.types.is_dictionary(combined.type):
        combined = combined.dictionary_decode()
    if pa.types.is_large_string(combined.type) or pa.types.is_string_view(combined.type):
        combined = pc.cast(combined, pa.string())
    return combined


def _is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _is_number(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _is_value(kind: pa.DataType) -> bool:
    return _is_number(kind) or _is_text(kind) or pa.types.is_boolean(kind)


def _floats(values: pa.Array) -> pa.Array:
    """Numbers as floats, NaN and infinities as no value (JSON has neither)."""
    floats = pc.cast(values, pa.float64(), safe=False)
    return pc.if_else(pc.is_finite(floats), floats, pa.scalar(None, pa.float64()))


def _feature(values: pa.Array) -> pa.Array:
    return _floats(values) if _is_number(values.type) else values


def _output(values: pa.Array) -> pa.Array:
    """A class or a number as JSON would give it: integers as integers, floats as floats."""
    kind = values.type
    if pa.types.is_integer(kind):
        return pc.cast(values, pa.int64())
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _floats(values)
    return values


def _text_or_int(values: pa.Array) -> pa.Array:
    return pc.cast(values, pa.int64()) if pa.types.is_integer(values.type) else values


def _struct(arrays: dict[str, pa.Array]) -> pa.StructArray:
    return pa.StructArray.from_arrays(list(arrays.values()), names=list(arrays))
