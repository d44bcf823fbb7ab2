"""A pinned reference read from tables (pipeline/reference.py with sources/tables.py):
a training set as a directory of Parquet files, or as CSV, gives the detectors the same
reference as the same events in JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from streamwatch.batch import Columns, Schema
from streamwatch.config import Settings, load_settings
from streamwatch.pipeline.reference import Pinned, load_reference
from tests.scenarios.streams import Stream, messages
from tests.tables import flatten, write, write_jsonl


@pytest.fixture(scope="module")
def training() -> list[bytes]:
    """Prediction events each carrying its label, training-set style, in time order."""
    raws = messages(Stream(seed=5, trough=10, peak=120), 0, 12)
    events = [msgspec.json.decode(raw) for raw in raws]
    labels = {e["event_id"]: e["label"] for e in events if "prediction" not in e}
    rows = []
    for e in events:
        if "prediction" in e and e["event_id"] in labels:
            rows.append(msgspec.json.encode({**e, "label": labels[e["event_id"]]}))
    assert len(rows) > 500
    return rows


def settings(directory: Path) -> Settings:
    env = directory / "sw.env"
    env.write_text(
        'STREAMWATCH_SERVER__ENABLED=false\nSTREAMWATCH_TABLE__SEGMENTS=["region","gender"]\n'
    )
    return load_settings([env])


def schema_of(schema: Schema) -> dict[str, Any]:
    return {
        "features": schema.features,
        "outputs": schema.outputs,
        "segments": schema.segments,
        "max_columns": schema.max_columns,
        "ignored": schema.ignored,
    }


def assert_same_columns(got: Columns, want: Columns, what: str) -> None:
    assert sorted(got.numeric) == sorted(want.numeric), what
    for name, values in want.numeric.items():
        np.testing.assert_array_equal(got.numeric[name], values, err_msg=f"{what} {name}")
    assert sorted(got.categorical) == sorted(want.categorical), what
    for name, objects in want.categorical.items():
        assert got.categorical[name].tolist() == objects.tolist(), f"{what} {name}"
    assert sorted(got.wrong_type) == sorted(want.wrong_type), what
    for name, flags in want.wrong_type.items():
        np.testing.assert_array_equal(got.wrong_type[name], flags, err_msg=f"{what} {name}")


def assert_same_reference(got: dict[str, Pinned], want: dict[str, Pinned], n: int) -> None:
    assert sorted(got) == sorted(want) == ["fraud"]
    for model, pinned in want.items():
        other = got[model]
        assert schema_of(other.schema) == schema_of(pinned.schema)
        assert other.batch.n == pinned.batch.n == n
        np.testing.assert_array_equal(other.batch.event_time, pinned.batch.event_time)
        assert other.batch.event_ids is not None
        assert pinned.batch.event_ids is not None
        assert other.batch.event_ids.tolist() == pinned.batch.event_ids.tolist()
        assert_same_columns(other.batch.features, pinned.batch.features, "features")
        assert_same_columns(other.batch.outputs, pinned.batch.outputs, "outputs")
        assert_same_columns(other.batch.operational, pinned.batch.operational, "operational")
        assert_same_columns(other.batch.segments, pinned.batch.segments, "segments")
        assert len(pinned.labels) == len(other.labels) == n
        assert [(e.event_id, e.label) for e in other.labels] == [
            (e.event_id, e.label) for e in pinned.labels
        ]


def test_a_reference_from_a_parquet_directory_equals_the_same_events_in_jsonl(
    tmp_path: Path, training: list[bytes]
) -> None:
    s = settings(tmp_path)
    jsonl = load_reference(write_jsonl(training, tmp_path / "train.jsonl"), s)
    pinned = jsonl["fraud"]
    assert pinned.schema.segments == {"region", "gender"}
    assert pinned.batch.features.numeric
    assert pinned.batch.features.categorical
    assert set(pinned.batch.segments.categorical) == {"region", "gender"}

    data = flatten(training)
    root = tmp_path / "train"
    third = data.num_rows // 3
    for k, start in enumerate(range(0, data.num_rows, third)):
        write(data.slice(start, third), root / f"part={k}" / "data.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    assert_same_reference(load_reference(root, s), jsonl, len(training))


def test_a_reference_from_csv_equals_the_same_events_in_jsonl(
    tmp_path: Path, training: list[bytes]
) -> None:
    assert any(b'"region":"NA"' in raw for raw in training)  # North America
    s = settings(tmp_path)
    jsonl = load_reference(write_jsonl(training, tmp_path / "train.jsonl"), s)
    csv = write(flatten(training), tmp_path / "train.csv")
    assert_same_reference(load_reference(csv, s), jsonl, len(training))


def test_a_reference_table_with_no_model_column_takes_the_set_model(
    tmp_path: Path, training: list[bytes]
) -> None:
    s = settings(tmp_path)
    jsonl = load_reference(write_jsonl(training, tmp_path / "train.jsonl"), s)
    path = write(flatten(training).drop_columns(["model_id"]), tmp_path / "train.parquet")
    one = s.model_copy(update={"table": s.table.model_copy(update={"model": "fraud"})})
    assert_same_reference(load_reference(path, one), jsonl, len(training))
