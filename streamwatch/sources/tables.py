"""Replay tables: Parquet and CSV files (a file, or a directory of them, hive-partitioned
or not), a row per event, read by Arrow and mapped to event rows (events/table.py).

Files are read in path order (``day=2026-11-01/`` before ``day=2026-11-02/``), each whole
and in event-time order (sorted, stably, where it is not; a file of text times that
Arrow cannot read as times, one row or more, is read in its order, each row decoded as
an event's). A row's origin is (file, 0,
its place in that order, from 1). Every file's columns are checked against the mapping
before any is read, so that a wrong setting is refused at start with the column named.
Files and directories whose name starts with ``.`` or ``_`` (``_SUCCESS``,
``_delta_log``) are left out. A hive partition's value (``model_id=fraud/``) is a text
column of its file's rows, there to be mapped (the model id, a segment), never a
feature unless ``TABLE__FEATURES`` lists it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from streamwatch.config.tables import TableSettings
from streamwatch.errors import SourceError
from streamwatch.events import Polled
from streamwatch.events.polled import Written
from streamwatch.events.table import TableMapping
from streamwatch.sources.base import Source
from streamwatch.sources.replay import Files, ReplaySource

TABLES = (".parquet", ".csv", ".csv.gz")


def is_table(path: Path) -> bool:
    return path.is_dir() or path.name.endswith(TABLES)


def table_files(path: Path) -> list[Path]:
    """The table files of ``path`` (itself, or those under it), in path order."""
    if not path.is_dir():
        return [path]
    found = sorted(
        p
        for p in path.rglob("*")
        if p.name.endswith(TABLES)
        and p.is_file()
        and not any(part[0] in "._" for part in p.relative_to(path).parts)
    )
    if not found:
        raise SourceError(f"{path} holds no {', '.join(TABLES)} files")
    return found


def partitions(path: Path) -> dict[str, str]:
    """The hive partition values of a file's directories (``day=2026-11-03``)."""
    pairs = (part.split("=", 1) for part in path.parent.parts if "=" in part[1:])
    return {key: value for key, value in pairs if key[0] not in "._"}


def schema_of(path: Path, csv: pcsv.ConvertOptions) -> pa.Schema:
    """A file's columns, with its partitions' as text (where the file has none of the
    name)."""
    try:
        if path.name.endswith(".parquet"):
            schema = pq.read_schema(path)
        else:
            with pcsv.open_csv(path, convert_options=csv) as reader:
                schema = reader.schema
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc
    for key in partitions(path).keys() - set(schema.names):
        schema = schema.append(pa.field(key, pa.string()))
    return schema


def read_table(path: Path, csv: pcsv.ConvertOptions) -> pa.Table:
    try:
        if path.name.endswith(".parquet"):
            table = pq.read_table(path)
        else:
            table = pcsv.read_csv(path, convert_options=csv)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc
    for key, value in sorted(partitions(path).items()):
        if key not in table.column_names:
            table = table.append_column(key, pa.repeat(pa.scalar(value), table.num_rows))
    return table


def _csv_options(table: TableSettings) -> pcsv.ConvertOptions:
    """Only an empty field is no value ("NA" is North America, "null" may be a class);
    ids are text as written (model "007" is not model 7)."""
    text = [table.event_id, table.model_id, table.model_version]
    return pcsv.ConvertOptions(
        column_types=dict.fromkeys(text, pa.string()),
        null_values=[""],
        strings_can_be_null=True,
    )


def open_files(paths: Sequence[Path], table: TableSettings) -> Source:
    """A source over event files: JSONL (plain or gzip), or tables; not both at once."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SourceError(f"no such file: {', '.join(missing)}")
    tables = [p for p in paths if is_table(p)]
    if not tables:
        return ReplaySource(paths)
    if len(tables) < len(paths):
        raise SourceError("give either JSONL files or tables (Parquet, CSV), not both")
    return TableSource([f for p in tables for f in table_files(p)], table)


class TableSource(Files):
    """Rows of table files as event rows, file by file, each in event-time order."""

    def __init__(self, files: Sequence[Path], table: TableSettings) -> None:
        self.files = list(files)
        self.csv = _csv_options(table)
        # Checked before any is read: a wrong column is refused at start.
        schemas = [schema_of(f, self.csv) for f in self.files]
        self.mappings = [
            TableMapping.of(s, table, str(f), frozenset(partitions(f)))
            for s, f in zip(schemas, self.files, strict=True)
        ]
        self._rows = self._read()
        self._file: tuple[Path, pa.StructArray] | None = None
        self._at = 0  # rows of the file polled

    def _read(self) -> Generator[tuple[Path, pa.StructArray]]:
        for path, mapping in zip(self.files, self.mappings, strict=True):
            rows = mapping.rows(read_table(path, self.csv))
            yield path, _in_time_order(rows)

    def poll(self, max_records: int) -> Polled | None:
        """The next rows of the current file, up to ``max_records``; None at the end."""
        while self._file is None or self._at == len(self._file[1]):
            self._file, self._at = next(self._rows, None), 0
            if self._file is None:
                return None
        path, rows = self._file
        start, self._at = self._at, min(self._at + max_records, len(rows))
        part = rows.slice(start, self._at - start)
        offsets = np.arange(start + 1, self._at + 1, dtype=np.int64)
        ends = np.array([len(part)], np.intp)
        return Polled(Written(part), [str(path)], [0], ends, offsets, part)

    def close(self) -> None:
        self._rows.close()


def _in_time_order(rows: pa.StructArray) -> pa.StructArray:
    """Rows stably sorted by event time, unless they are in order already (rows with no
    time keep their place among the first: decoding refuses them)."""
    stamps = rows.field("timestamp")
    if not pa.types.is_floating(stamps.type) and not pa.types.is_integer(stamps.type):
        return rows  # text Arrow could not read as times: decoding reads each row's
    times = pc.fill_null(pc.cast(stamps, pa.float64()), -np.inf).to_numpy(zero_copy_only=False)
    if len(times) < 2 or bool((np.diff(times) >= 0).all()):
        return rows
    order = np.argsort(times, kind="stable")
    return rows.take(pa.array(order))
