"""Replaying tables (sources/tables.py): the same events as Parquet, CSV, a partitioned
directory of Parquet files or JSONL give the same windows and the same notifications."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry

from streamwatch.config import Settings, load_settings
from streamwatch.config.tables import TableSettings
from streamwatch.daemon import build_engine
from streamwatch.errors import ConfigError, SourceError
from streamwatch.events import decode_batch
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.by_model import by_model
from streamwatch.pipeline.engine import Engine
from streamwatch.sources.tables import TableSource, open_files, table_files
from tests.scenarios.streams import Stream, messages
from tests.tables import flatten, write, write_jsonl
from tests.unit.pipeline.test_same_results import digest

ENV = [
    "STREAMWATCH_WINDOW__SIZE=10m",
    "STREAMWATCH_SERVER__ENABLED=false",
    'STREAMWATCH_TABLE__SEGMENTS=["region","gender"]',
    "STREAMWATCH_REFERENCE__MIN_EVENTS=500",
    # Slices judged at this stream's size: the digests then depend on segment values.
    "STREAMWATCH_DETECTORS__SLICES__MIN_SUPPORT=10",
]


@pytest.fixture(scope="module")
def raws() -> list[bytes]:
    """~7,700 prediction and label messages over 40 ten-minute windows."""
    return messages(Stream(seed=3, trough=10, peak=120), 0, 40)


def settings(directory: Path) -> Settings:
    env = directory / "sw.env"
    env.write_text("\n".join(ENV) + "\n")
    return load_settings([env])


class Replayed:
    """One replay's windows (model, role, start, events, findings digest), its
    notification ids, and its engine (for the metrics)."""

    def __init__(self, paths: Sequence[Path], directory: Path) -> None:
        s = settings(directory)
        self.engine: Engine = build_engine(s, [], Metrics(CollectorRegistry()))
        out = self.engine.run(open_files(list(paths), s.table), None)
        self.windows: list[tuple[Any, ...]] = sorted(
            (w.model, w.role, w.bounds.start, w.n, digest(w.findings))
            for o in out
            for w in o.closed
        )
        self.notifications = sorted(n.id for o in out for n in o.notifications)

    @property
    def bad(self) -> float:
        return self.engine.metrics.total("streamwatch_bad_events")


def assert_same(table: Replayed, jsonl: Replayed) -> None:
    assert len(jsonl.windows) > 50
    assert jsonl.notifications, "the stream alerts: the comparison is not vacuous"
    assert table.windows == jsonl.windows
    assert table.notifications == jsonl.notifications
    assert table.bad == jsonl.bad == 0


def test_parquet_and_jsonl_of_the_same_events_replay_the_same(
    tmp_path: Path, raws: list[bytes]
) -> None:
    jsonl = Replayed([write_jsonl(raws, tmp_path / "e.jsonl")], tmp_path)
    parquet = Replayed([write(flatten(raws), tmp_path / "e.parquet")], tmp_path)
    assert_same(parquet, jsonl)
    assert sum(w[3] for w in jsonl.windows) > 1000


def test_csv_and_jsonl_of_the_same_events_replay_the_same(
    tmp_path: Path, raws: list[bytes]
) -> None:
    assert any(b'"region":"NA"' in raw for raw in raws)
    jsonl = Replayed([write_jsonl(raws, tmp_path / "e.jsonl")], tmp_path)
    csv = Replayed([write(flatten(raws), tmp_path / "e.csv")], tmp_path)
    assert_same(csv, jsonl)


def csv_rows(path: Path, text: str, table: TableSettings) -> list[dict[str, Any]]:
    path.write_text(text)
    source = open_files([path], table)
    assert isinstance(source, TableSource)
    polled = source.poll(100)
    assert polled is not None
    assert polled.rows is not None
    rows: list[dict[str, Any]] = polled.rows.to_pylist()
    return rows


def test_csv_text_that_looks_like_a_null_marker_is_text(tmp_path: Path) -> None:
    text = (
        "event_id,model_id,timestamp,score,region,merchant\n"
        "e1,fraud,1793707200000,0.5,NA,N/A\n"
        "e2,fraud,1793707201000,0.5,EU,m1\n"
    )
    rows = csv_rows(tmp_path / "e.csv", text, TableSettings(segments=["region"]))
    assert [r["segments"]["region"] for r in rows] == ["NA", "EU"]
    assert [r["features"]["merchant"] for r in rows] == ["N/A", "m1"]


def test_a_csv_column_with_no_values_yet_is_no_value(tmp_path: Path) -> None:
    text = (
        "event_id,model_id,timestamp,score,label\n"
        "e1,fraud,1793707200000,0.5,\n"
        "e2,fraud,1793707201000,0.5,\n"
    )
    rows = csv_rows(tmp_path / "e.csv", text, TableSettings())
    assert [r.get("label") for r in rows] == [None, None]


def day(raw: bytes) -> int:
    return int(msgspec.json.decode(raw)["timestamp"]) // 86_400_000


def test_a_partitioned_directory_replays_like_one_jsonl_file(
    tmp_path: Path, raws: list[bytes]
) -> None:
    jsonl = Replayed([write_jsonl(raws, tmp_path / "e.jsonl")], tmp_path)
    root = tmp_path / "events"
    by_hour: dict[int, list[bytes]] = {}
    for raw in raws:  # parts of a few hours each: several files, in path order
        hour = int(msgspec.json.decode(raw)["timestamp"]) // 3_600_000
        by_hour.setdefault(hour // 2, []).append(raw)
    assert len(by_hour) > 2
    for part, (_, chunk) in enumerate(sorted(by_hour.items())):
        write(flatten(chunk), root / f"day={day(chunk[0])}" / f"part-{part:03d}.parquet")
    (root / "_SUCCESS").write_bytes(b"")
    # Neither may be read: a hidden file, and a directory of bookkeeping.
    junk = flatten(raws[:50])
    write(junk, root / f"day={day(raws[0])}" / ".hidden.parquet")
    write(junk, root / "_delta_log" / "0.parquet")
    files = table_files(root)
    assert len(files) == len(by_hour)
    assert all(not f.name.startswith((".", "_")) and "_delta_log" not in str(f) for f in files)
    assert files == sorted(files)
    source = open_files([root], settings(tmp_path).table)
    assert isinstance(source, TableSource)
    source.close()
    assert_same(Replayed([root], tmp_path), jsonl)


def test_a_directory_of_no_tables_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "_SUCCESS").write_bytes(b"")
    with pytest.raises(SourceError, match="holds no"):
        table_files(tmp_path)


def test_rows_out_of_time_order_are_sorted(tmp_path: Path, raws: list[bytes]) -> None:
    data = flatten(raws)
    ordered = Replayed([write(data, tmp_path / "ordered.parquet")], tmp_path)
    order = list(range(data.num_rows))
    random.Random(7).shuffle(order)
    shuffled = data.take(pa.array(order))
    assert shuffled.column("timestamp").to_pylist() != data.column("timestamp").to_pylist()
    replayed = Replayed([write(shuffled, tmp_path / "shuffled.parquet")], tmp_path)
    assert len(ordered.windows) > 50
    assert ordered.notifications
    assert replayed.windows == ordered.windows
    assert replayed.notifications == ordered.notifications


def test_a_row_with_no_event_id_is_a_bad_event_and_the_rest_are_processed(
    tmp_path: Path, raws: list[bytes]
) -> None:
    data = flatten(raws)
    good = Replayed([write(data, tmp_path / "good.parquet")], tmp_path)
    ids = data.column("event_id").to_pylist()
    at = next(i for i, raw in enumerate(raws) if b'"prediction"' in raw and i > 100)
    ids[at] = None
    broken = data.set_column(
        data.schema.get_field_index("event_id"), "event_id", pa.array(ids, pa.string())
    )
    replayed = Replayed([write(broken, tmp_path / "broken.parquet")], tmp_path)
    assert replayed.bad == 1
    assert good.bad == 0
    assert len(replayed.windows) == len(good.windows)
    events = sum(w[3] for w in replayed.windows)
    assert events == sum(w[3] for w in good.windows) - 1


def test_jsonl_and_tables_together_are_refused(tmp_path: Path, raws: list[bytes]) -> None:
    jsonl = write_jsonl(raws[:10], tmp_path / "e.jsonl")
    parquet = write(flatten(raws[:10]), tmp_path / "e.parquet")
    table = settings(tmp_path).table
    with pytest.raises(SourceError, match="not both"):
        open_files([jsonl, parquet], table)
    with pytest.raises(SourceError, match="not both"):
        open_files([parquet, jsonl], table)


def test_a_wrong_column_is_refused_before_any_file_is_read(
    tmp_path: Path, raws: list[bytes]
) -> None:
    def renamed(data: pa.Table) -> pa.Table:
        return data.rename_columns(["proba" if n == "score" else n for n in data.column_names])

    write(renamed(flatten(raws[:20])), tmp_path / "d" / "a.parquet")
    write(renamed(flatten(raws[20:40])).drop_columns(["proba"]), tmp_path / "d" / "b.parquet")
    env = tmp_path / "sw.env"
    env.write_text("\n".join([*ENV, "STREAMWATCH_TABLE__SCORE=proba"]) + "\n")
    table = load_settings([env]).table
    with pytest.raises(ConfigError, match=r"^STREAMWATCH_TABLE__SCORE: column 'proba'") as raised:
        open_files([tmp_path / "d"], table)
    assert "b.parquet" in str(raised.value)
    assert "a.parquet" not in str(raised.value)


def test_text_times_arrow_cannot_read_are_read_row_by_row(tmp_path: Path) -> None:
    """A column of text times with one that is no time: decoding reads each row as it
    reads an event's, refuses that one with its reason and keeps the others; text with
    no zone is UTC, as a timestamp column with none is; an integer model id is text."""
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        "event_id,model_id,timestamp,score\n"
        "e1,7,2026-11-03T10:00:00Z,0.5\n"
        "e2,7,yesterday,0.4\n"
        "e3,7,2026-11-03T10:00:02+01:00,0.3\n"
    )
    naive = tmp_path / "naive.csv"
    naive.write_text("event_id,model_id,timestamp,score\ne1,7,2026-11-03 10:00:00,0.5\n")
    for path, kept, refused in ((mixed, 2, 1), (naive, 1, 0)):
        polled = open_files([path], TableSettings()).poll(10)
        assert polled is not None
        decoded = decode_batch(polled, 1 << 20)
        assert decoded.columns.n == kept
        assert len(decoded.bad) == refused
        assert decoded.columns.models == ["7"]
    assert decoded.columns.event_time.tolist() == [1_793_700_000.0]  # 10:00 UTC


def test_csv_ids_are_text_as_written(tmp_path: Path) -> None:
    """Model "042" is not model 42, nor event "007" event 7."""
    path = tmp_path / "ids.csv"
    path.write_text("event_id,model_id,timestamp,score\n007,042,1793707200000,0.5\n")
    polled = open_files([path], TableSettings()).poll(10)
    assert polled is not None
    decoded = decode_batch(polled, 1 << 20)
    assert decoded.columns.models == ["042"]
    assert decoded.columns.event_id.tolist() == ["007"]


def test_labels_of_rows_whose_times_are_read_one_by_one(tmp_path: Path) -> None:
    """A file whose time column holds one row that is no time: the labels of the others
    are read as events' (their times parsed), the bad row refused."""
    path = tmp_path / "labelled.csv"
    path.write_text(
        "event_id,model_id,timestamp,score,label\n"
        "e1,fraud,2026-11-03T10:00:00Z,0.5,1\n"
        "e2,fraud,soon,0.4,0\n"
        "e3,fraud,2026-11-03T10:00:02+00:00,0.3,0\n"
    )
    polled = open_files([path], TableSettings()).poll(10)
    assert polled is not None
    decoded = decode_batch(polled, 1 << 20)
    labels = by_model(decoded.columns)["fraud"].labels
    assert [(e.event_id, e.label, e.epoch_seconds) for e in labels] == [
        ("e1", 1, 1_793_700_000.0),
        ("e3", 0, 1_793_700_002.0),
    ]
    assert len(decoded.bad) == 1


def test_hive_partition_values_are_columns_to_map_not_features(tmp_path: Path) -> None:
    """``model_id=fraud/day=03/``: the rows are fraud's; the day is no feature."""
    data = pa.table(
        {
            "event_id": ["e1", "e2"],
            "timestamp": [1_793_707_200_000, 1_793_707_201_000],
            "score": [0.5, 0.4],
            "amount": [1.0, 2.0],
        }
    )
    for model in ("fraud", "churn"):
        write(data, tmp_path / "logs" / f"model_id={model}" / "day=03" / "part.parquet")
    source = open_files([tmp_path / "logs"], TableSettings(segments=["day"]))
    assert isinstance(source, TableSource)
    rows = []
    while (polled := source.poll(10)) is not None:
        assert polled.rows is not None
        rows += polled.rows.to_pylist()
    assert [r["model_id"] for r in rows] == ["churn", "churn", "fraud", "fraud"]
    assert [r["features"] for r in rows] == [{"amount": 1.0}, {"amount": 2.0}] * 2
    assert {r["segments"]["day"] for r in rows} == {"03"}
