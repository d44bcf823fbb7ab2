"""Replay tables: Parquet and CSV files (a file, or a directory of them, hive-partitioned
or not), a row per event, read by Arrow and mapped to event rows (events/table.py).

Files are read in path order (``day=2026-11-01/`` before ``day=2026-11-02/``), each whole
and in event-time order (sorted, stably, where it is not). A row's origin is (file, 0,
its place in that order, from 1). Every file's columns are checked against the mapping
before any is read, so that a wrong setting is refused at start with the column named.
Files and directories whose name starts with ``.`` or ``_`` (``_SUCCESS``,
``_delta_log``) are left out.
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
# Only an empty field is no value: "NA" is North America, "null" may be a category.
_CSV = pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True)


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


def schema_of(path: Path) -> pa.Schema:
    try:
        if path.name.endswith(".parquet"):
            return pq.read_schema(path)
        with pcsv.open_csv(path, convert_options=_CSV) as reader:
            return reader.schema
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc


def read_table(path: Path) -> pa.Table:
    try:
        if path.name.endswith(".parquet"):
            return pq.read_table(path)
        return pcsv.read_csv(path, convert_options=_CSV)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc


def open_files(paths: Sequence[Path], table: TableSettings, model: str | None = None) -> Source:
    """A source over event files: JSONL (plain or gzip), or tables; not both at once.
    ``model``: the model of a table with no model column (and none set)."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SourceError(f"no such file: {', '.join(missing)}")
    tables = [p for p in paths if is_table(p)]
    if not tables:
        return ReplaySource(paths)
    if len(tables) < len(paths):
        raise SourceError("give either JSONL files or tables (Parquet, CSV), not both")
    return TableSource([f for p in tables for f in table_files(p)], table, model)


class TableSource(Files):
    """Rows of table files as event rows, file by file, each in event-time order."""

    def __init__(self, files: Sequence[Path], table: TableSettings, model: str | None) -> None:
        self.files = list(files)
        # Checked before any is read: a wrong column is refused at start.
        self.mappings = [TableMapping.of(schema_of(f), table, str(f), model) for f in self.files]
        self._rows = self._read()
        self._file: tuple[Path, pa.StructArray] | None = None
        self._at = 0  # rows of the file polled

    def _read(self) -> Generator[tuple[Path, pa.StructArray]]:
        for path, mapping in zip(self.files, self.mappings, strict=True):
            rows = mapping.rows(read_table(path))
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
