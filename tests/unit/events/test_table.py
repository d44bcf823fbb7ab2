"""A table's columns as event fields (events/table.py): a mapping that cannot work is
refused at start, naming the setting and the column; a good one gives the values a
JSON event would."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from streamwatch.config.tables import TableSettings
from streamwatch.errors import ConfigError
from streamwatch.events.table import TableMapping

WHERE = "events.parquet"
MS = [1793707200000, 1793707261000, 1793707322000]  # whole seconds, in ms


def table(**columns: Any) -> pa.Table:
    """Three rows of a well-formed table, with ``columns`` added or replaced (None
    drops a column)."""
    base: dict[str, Any] = {
        "event_id": ["e1", "e2", "e3"],
        "model_id": ["fraud", "fraud", "fraud"],
        "timestamp": MS,
        "score": [0.1, 0.8, 0.4],
        "amount": [12.5, 3.0, 7.25],
    }
    base.update(columns)
    return pa.table({k: v for k, v in base.items() if v is not None})


def refused(data: pa.Table, settings: TableSettings) -> str:
    with pytest.raises(ConfigError) as raised:
        TableMapping.of(data.schema, settings, WHERE)
    return str(raised.value)


def rows(data: pa.Table, settings: TableSettings | None = None) -> list[dict[str, Any]]:
    mapping = TableMapping.of(data.schema, settings or TableSettings(), WHERE)
    out: list[dict[str, Any]] = mapping.rows(data).to_pylist()
    return out


def test_an_explicit_column_that_is_not_there_is_refused_with_setting_and_column() -> None:
    message = refused(table(), TableSettings(score="proba"))
    assert message.startswith("STREAMWATCH_TABLE__SCORE: ")
    assert "'proba'" in message
    assert WHERE in message
    assert "amount" in message  # the columns there are shown


@pytest.mark.parametrize("field", ["event_id", "timestamp"])
def test_a_table_without_event_id_or_timestamp_is_refused(field: str) -> None:
    message = refused(table(**{field: None}), TableSettings())
    assert message.startswith(f"STREAMWATCH_TABLE__{field.upper()}: ")
    assert f"'{field}'" in message


def test_renamed_event_id_column_missing_is_refused() -> None:
    message = refused(table(), TableSettings(event_id="id"))
    assert message.startswith("STREAMWATCH_TABLE__EVENT_ID: ")
    assert "'id'" in message


def test_a_table_with_no_model_column_needs_a_model() -> None:
    message = refused(table(model_id=None), TableSettings())
    assert message.startswith("STREAMWATCH_TABLE__MODEL_ID: ")
    assert "'model_id'" in message


def test_a_table_with_no_output_column_is_refused() -> None:
    message = refused(table(score=None), TableSettings())
    assert message.startswith("STREAMWATCH_TABLE__PREDICTION: ")


@pytest.mark.parametrize(
    "column",
    [
        pa.array([dt.date(2026, 11, 1)] * 3, pa.date32()),
        pa.array([[1, 2], [3], []], pa.list_(pa.int64())),
    ],
    ids=["date32", "list"],
)
def test_a_feature_column_of_an_unusable_type_is_named(column: pa.Array) -> None:
    message = refused(table(opened=column), TableSettings())
    assert message.startswith("STREAMWATCH_TABLE__FEATURES: ")
    assert "'opened'" in message
    assert str(column.type) in message


def test_an_unusable_column_left_out_by_ignore_is_no_error() -> None:
    data = table(opened=pa.array([dt.date(2026, 11, 1)] * 3, pa.date32()))
    assert [r["features"] for r in rows(data, TableSettings(ignore=["opened"]))] == [
        {"amount": 12.5},
        {"amount": 3.0},
        {"amount": 7.25},
    ]


def test_features_listing_a_missing_column_is_refused() -> None:
    message = refused(table(), TableSettings(features=["amount", "balance"]))
    assert message.startswith("STREAMWATCH_TABLE__FEATURES: ")
    assert "'balance'" in message


def test_a_segment_that_is_not_there_is_refused() -> None:
    message = refused(table(), TableSettings(segments=["region"]))
    assert message.startswith("STREAMWATCH_TABLE__SEGMENTS: ")
    assert "'region'" in message


def test_probabilities_with_a_missing_column_are_refused() -> None:
    data = table(score=None, p_cat=[0.2, 0.5, 0.9])
    settings = TableSettings(probabilities={"cat": "p_cat", "dog": "p_dog"})
    message = refused(data, settings)
    assert message.startswith("STREAMWATCH_TABLE__PROBABILITIES: ")
    assert "'dog'" in message
    assert "'p_dog'" in message


def test_a_non_number_score_column_is_refused() -> None:
    message = refused(table(score=["high", "low", "low"]), TableSettings())
    assert message.startswith("STREAMWATCH_TABLE__SCORE: ")
    assert "'score'" in message


@pytest.mark.parametrize(
    "settings",
    [
        {"score": "amount", "features": ["amount"]},
        {"prediction": "p", "label": "p"},
        {"segments": ["region"], "features": ["region"]},
        {"probabilities": {"a": "x"}, "latency_ms": "x"},
    ],
)
def test_the_same_column_mapped_twice_is_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="mapped to more than one field"):
        TableSettings(**settings)


def test_timestamps_of_every_kind_give_the_same_epoch_milliseconds() -> None:
    texts = [
        dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z") for ms in MS
    ]
    assert texts[0] == "2026-11-03T12:00:00Z"
    kinds = {
        "int ms": (table(), TableSettings()),
        "timestamp[ms]": (table(timestamp=pa.array(MS, pa.timestamp("ms"))), TableSettings()),
        "timestamp[us, UTC]": (
            table(timestamp=pa.array([m * 1000 for m in MS], pa.timestamp("us", tz="UTC"))),
            TableSettings(),
        ),
        "RFC 3339": (table(timestamp=texts), TableSettings()),
        "RFC 3339 offset": (
            table(timestamp=["2026-11-03T13:00:00+01:00", "2026-11-03T12:01:01Z", texts[2]]),
            TableSettings(),
        ),
        "seconds": (
            table(timestamp=[m // 1000 for m in MS]),
            TableSettings(timestamp_unit="s"),
        ),
        "float seconds": (
            table(timestamp=[m / 1000 for m in MS]),
            TableSettings(timestamp_unit="s"),
        ),
    }
    for name, (data, settings) in kinds.items():
        assert [r["timestamp"] for r in rows(data, settings)] == MS, name


def test_nan_in_a_float_feature_or_score_is_no_value() -> None:
    data = table(amount=[1.5, math.nan, None], score=[math.nan, 0.5, 0.25])
    out = rows(data)
    assert [r["features"]["amount"] for r in out] == [1.5, None, None]
    assert [r["score"] for r in out] == [None, 0.5, 0.25]


def test_integer_features_become_floats_and_integer_predictions_stay_integers() -> None:
    data = table(items=pa.array([1, 2, 3], pa.int32()), prediction=pa.array([0, 1, 1], pa.int8()))
    out = rows(data)
    assert [r["features"]["items"] for r in out] == [1.0, 2.0, 3.0]
    assert all(type(r["features"]["items"]) is float for r in out)
    assert [r["prediction"] for r in out] == [0, 1, 1]
    assert all(type(r["prediction"]) is int for r in out)


def test_dictionary_encoded_text_columns_are_read_as_text() -> None:
    data = table(
        model_id=pa.array(["fraud", "fraud", "churn"]).dictionary_encode(),
        merchant=pa.array(["m1", None, "m1"]).dictionary_encode(),
        region=pa.array(["EU", "US", "EU"]).dictionary_encode(),
        prediction=pa.array(["yes", "no", "yes"]).dictionary_encode(),
    )
    mapping = TableMapping.of(data.schema, TableSettings(segments=["region"]), WHERE)
    struct = mapping.rows(data)
    assert not any(pa.types.is_dictionary(f.type) for f in struct.type)
    out = struct.to_pylist()
    assert [r["model_id"] for r in out] == ["fraud", "fraud", "churn"]
    assert [r["features"]["merchant"] for r in out] == ["m1", None, "m1"]
    assert [r["segments"] for r in out] == [{"region": "EU"}, {"region": "US"}, {"region": "EU"}]
    assert [r["prediction"] for r in out] == ["yes", "no", "yes"]


def test_a_model_setting_stands_for_a_missing_model_column() -> None:
    out = rows(table(model_id=None), TableSettings(model="fraud"))
    assert [r["model_id"] for r in out] == ["fraud"] * 3
    assert [r["event_id"] for r in out] == ["e1", "e2", "e3"]
    assert "model_id" not in out[0]["features"]


def test_a_model_setting_overrides_a_model_column() -> None:
    data = table(model_id=["a", "b", "c"])
    out = rows(data, TableSettings(model="fraud"))
    assert [r["model_id"] for r in out] == ["fraud"] * 3
    assert "model_id" not in out[0]["features"]  # the column overridden is nothing


def test_a_column_named_like_a_field_listed_as_a_feature_is_a_feature() -> None:
    """A credit ``score`` among the features, or left out: not the model's score."""
    data = table(score=[720.0, 650.0, 700.0], prediction=["yes", "no", "yes"])
    out = rows(data, TableSettings(features=["score", "amount"]))
    assert [r["features"]["score"] for r in out] == [720.0, 650.0, 700.0]
    assert "score" not in out[0]
    ignored = rows(data, TableSettings(ignore=["score"]))
    assert "score" not in ignored[0]
    assert "score" not in ignored[0]["features"]


def test_a_column_twice_in_a_file_is_refused_with_its_name() -> None:
    data = pa.Table.from_arrays(
        [
            pa.array(["e1"]),
            pa.array(["fraud"]),
            pa.array(MS[:1]),
            pa.array([0.5]),
            pa.array([1.0]),
            pa.array([2.0]),
        ],
        names=["event_id", "model_id", "timestamp", "score", "x", "x"],
    )
    assert "['x'] more than once" in refused(data, TableSettings())


def test_nanosecond_timestamps_and_infinities() -> None:
    """pandas writes nanoseconds: read, not refused for losing them; an infinity is no
    value, as NaN is."""
    stamps = pa.array([MS[0] * 1_000_000 + 1, MS[1] * 1_000_000, MS[2] * 1_000_000])
    data = table(
        timestamp=stamps.cast(pa.timestamp("ns", tz="UTC")), amount=[1.0, float("inf"), 2.0]
    )
    out = rows(data)
    assert [r["timestamp"] for r in out] == pytest.approx([MS[0], MS[1], MS[2]], abs=1e-3)
    assert out[1]["features"] == {"amount": None}


def test_renamed_columns_map_to_event_fields_and_the_rest_are_features() -> None:
    data = pa.table(
        {
            "id": pa.array([7, 8], pa.int64()),
            "ts": pa.array(MS[:2], pa.timestamp("ms")),
            "proba": [0.9, 0.1],
            "y": [1, 0],
            "region": ["EU", "US"],
            "amount": [1.0, 2.0],
            "row_hash": ["h1", "h2"],
        }
    )
    settings = TableSettings(
        event_id="id",
        timestamp="ts",
        score="proba",
        label="y",
        model="fraud",
        segments=["region"],
        ignore=["row_hash"],
    )
    assert rows(data, settings) == [
        {
            "event_id": 7,
            "timestamp": MS[0],
            "score": 0.9,
            "label": 1,
            "model_id": "fraud",
            "features": {"amount": 1.0},
            "segments": {"region": "EU"},
        },
        {
            "event_id": 8,
            "timestamp": MS[1],
            "score": 0.1,
            "label": 0,
            "model_id": "fraud",
            "features": {"amount": 2.0},
            "segments": {"region": "US"},
        },
    ]
