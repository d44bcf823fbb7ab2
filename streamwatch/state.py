"""Durable state: checkpoints of the engine in a local SQLite file (WAL mode).

A checkpoint holds everything needed to resume (models' schemas, grids, references,
open windows, alert policy) and the source offsets it covers; the engine commits those
offsets to Kafka only after the checkpoint is written. A checkpoint written by another
format or with settings that shape state differently (window size, for instance) is
refused with a message saying what differs, never silently misread.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from streamwatch import history
from streamwatch.config import Settings
from streamwatch.errors import StateError
from streamwatch.history import WindowRecord

# 2: the inputs' Mahalanobis fit; 3: warm-up events held in the checkpoint; 4: the
# label join stored column by column.
FORMAT = 4
Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to process

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    scope TEXT PRIMARY KEY,
    written_at REAL NOT NULL,
    offsets BLOB NOT NULL,
    state BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    state: dict[str, Any]
    offsets: Offsets
    written_at: float


def shape(settings: Settings) -> str:
    """A digest of the settings that decide what a checkpoint's state means."""
    relevant = {
        "window": settings.window.model_dump(mode="json"),
        "detectors": settings.detectors.model_dump(mode="json"),
        "max_columns": settings.max_columns,
    }
    return hashlib.sha256(msgspec.json.encode(relevant)).hexdigest()[:16]


class StateStore:
    """Checkpoints in one SQLite file; ``scope`` names whose state it is."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.shape = shape(settings)
        self.keep = settings.history
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # freed pages keep no old values
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoint, fast
        self._db.executescript(_SCHEMA + history.SCHEMA)
        self._check_meta()

    def _check_meta(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("format", str(FORMAT)), ("shape", self.shape)],
                )
            return
        if meta.get("format") != str(FORMAT):
            raise StateError(
                f"state file {self.path} has format {meta.get('format')}; this streamwatch "
                f"reads format {FORMAT}. Move the file aside to start afresh."
            )
        if meta.get("shape") != self.shape:
            raise StateError(
                f"state file {self.path} was written with other window or detector settings; "
                "its windows would be misread. Restore those settings, or move the file "
                "aside to start afresh."
            )

    def load(self, scope: str = "engine") -> Checkpoint | None:
        return read_checkpoint(self._db, self.path, scope)

    def save(
        self,
        state: Mapping[str, Any],
        offsets: Offsets,
        scope: str = "engine",
        closed: Sequence[WindowRecord] = (),
        lag: Mapping[str, int] | None = None,
    ) -> None:
        """Write one checkpoint atomically, with the history of the windows closed since
        the last one and the consumer lag as last measured (for ``status``)."""
        blob = msgspec.msgpack.encode(state)
        offset_rows = msgspec.msgpack.encode([[t, p, o] for (t, p), o in sorted(offsets.items())])
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?, ?)",
                (scope, time.time(), offset_rows, blob),
            )
            if closed and self.keep.enabled:
                history.write(self._db, closed, self.keep)
            if lag is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('lag', ?)", (msgspec.json.encode(lag),)
                )

    def close(self) -> None:
        self._db.close()


def read_checkpoint(db: sqlite3.Connection, path: Path, scope: str = "engine") -> Checkpoint | None:
    """The checkpoint of ``scope`` in an open state file."""
    row = db.execute(
        "SELECT written_at, offsets, state FROM checkpoint WHERE scope = ?", (scope,)
    ).fetchone()
    if row is None:
        return None
    written_at, offsets, state = row
    try:
        decoded_offsets = msgspec.msgpack.decode(offsets)
        return Checkpoint(
            msgspec.msgpack.decode(state),
            {(t, int(p)): int(o) for t, p, o in decoded_offsets},
            float(written_at),
        )
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise StateError(f"state file {path} is unreadable: {exc}") from exc


def read_lag(db: sqlite3.Connection) -> dict[str, int]:
    """The consumer lag per partition ("topic:partition") at the last checkpoint."""
    row = db.execute("SELECT value FROM meta WHERE key = 'lag'").fetchone()
    return {} if row is None else msgspec.json.decode(row[0], type=dict[str, int])
