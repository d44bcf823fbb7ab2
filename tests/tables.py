"""Events as tables: the same JSON events flattened into a row each (features and
segments as columns of their own), written as Parquet or CSV, for the tests that
compare a table with the JSONL it was made from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

SEGMENTS = ["region", "gender"]  # the scenario streams' (tests/scenarios/streams.py)


def flatten(raws: Sequence[bytes]) -> pa.Table:
    """One row per event: its fields, then its features and segments as columns."""
    rows = []
    for raw in raws:
        event = msgspec.json.decode(raw)
        row = {k: v for k, v in event.items() if k not in ("features", "segments")}
        row.update(event.get("features", {}))
        row.update(event.get("segments", {}))
        rows.append(row)
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {name: [row.get(name) for row in rows] for name in names}
    for name, values in columns.items():  # a JSON number column holds floats and ints
        if any(isinstance(v, float) for v in values) and not any(
            isinstance(v, (str, bool)) for v in values
        ):
            columns[name] = [None if v is None else float(v) for v in values]
    return pa.table(columns)


def write(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        pq.write_table(table, path)
    else:
        pcsv.write_csv(table, path)
    return path


def write_jsonl(raws: Sequence[bytes], path: Path) -> Path:
    path.write_bytes(b"\n".join(raws) + b"\n")
    return path


def with_labels(raws: Sequence[bytes]) -> list[bytes]:
    """The prediction events, each with its label (as logged predictions joined with
    their outcomes are); the label events themselves left out."""
    events = [msgspec.json.decode(raw) for raw in raws]
    labels = {e["event_id"]: e["label"] for e in events if "prediction" not in e}
    return [
        msgspec.json.encode(e | {"label": labels[e["event_id"]]} if e["event_id"] in labels else e)
        for e in events
        if "prediction" in e
    ]
