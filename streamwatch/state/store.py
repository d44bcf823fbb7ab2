"""Durable state: checkpoints of the engine in a local SQLite file (WAL mode).

A checkpoint holds everything needed to resume (models' schemas, grids, references,
open windows, alert policy) and the source offsets it covers; the engine commits those
offsets to Kafka only after the checkpoint is written. A checkpoint written by another
format or with settings that shape state differently (window size, for instance) is
refused with a message saying what differs, never silently misread; so is one whose
checksum fails (a byte changed on disk, in a record that still decodes). A file that
cannot be opened, read or written (damaged, read-only, disk full) is a
:class:`StateError` naming it and what to do, never a bare SQLite error.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

from streamwatch.config import Settings
from streamwatch.errors import CheckpointError, StateError, storage
from streamwatch.events import Offsets
from streamwatch.observe import history
from streamwatch.observe.history import WindowRecord

log = logging.getLogger("streamwatch.state")

# 2: the inputs' Mahalanobis fit; 3: warm-up events held in the checkpoint; 4: the
# label join stored column by column; 6: a checksum in every checkpoint record.
FORMAT = 6
ZLIB_LEVEL = 1  # for state sent to Kafka: histograms compress 4x at level 1, 5 ms a MB
ENGINE = "engine"  # the scope of a single instance's checkpoint; scaled out: partition-N

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    scope TEXT PRIMARY KEY,
    written_at REAL NOT NULL,
    offsets BLOB NOT NULL,
    state BLOB NOT NULL,
    checksum BLOB NOT NULL
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
        # A model's own window and detector settings decide what its state means too.
        "models": {
            model: own.model_dump(mode="json", exclude_unset=True, include={"window", "detectors"})
            for model, own in sorted(settings.models.items())
        },
    }
    return hashlib.sha256(msgspec.json.encode(relevant)).hexdigest()[:16]


class StateStore:
    """Checkpoints in one SQLite file; ``scope`` names whose state it is."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.shape = shape(settings)
        self.keep = settings.history
        self.by_age = settings.window.mode == "time"
        with storage("state file", path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA secure_delete=ON")  # freed pages keep no old values
                self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoint
                self._db.executescript(_SCHEMA + history.SCHEMA)
                self._check_meta()
            except BaseException:
                self._db.close()
                raise

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

    def load(self, scope: str = ENGINE) -> Checkpoint | None:
        """The checkpoint of ``scope``, verified: one that fails its checksum or cannot be
        decoded raises :class:`CheckpointError` (nothing older is kept here; scaled out,
        the engine restores the partition from the changelog instead)."""
        return read_checkpoint(self._db, self.path, scope)

    def save(
        self,
        state: Mapping[str, Any],
        offsets: Offsets,
        closed: Sequence[WindowRecord] = (),
        lag: Mapping[str, int] | None = None,
    ) -> None:
        """Write the engine's checkpoint (see :meth:`save_scopes`)."""
        self.save_scopes({ENGINE: (encode(state), offsets)}, closed, lag)

    def save_scopes(
        self,
        scopes: Mapping[str, tuple[bytes, Offsets]],
        closed: Sequence[WindowRecord] = (),
        lag: Mapping[str, int] | None = None,
    ) -> None:
        """Write checkpoints (scope -> encoded state and the offsets it covers) in one
        transaction, with the history of the windows closed since the last one and the
        consumer lag as last measured (for ``status``)."""
        now = time.time()
        rows = []
        for scope, (blob, offsets) in scopes.items():
            encoded = encode_offsets(offsets)
            rows.append((scope, now, encoded, blob, checksum(encoded, blob)))
        with storage("state file", self.path), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?, ?, ?)", rows)
            if closed and self.keep.enabled:
                history.write(self._db, closed, self.keep, self.by_age)
            if lag is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('lag', ?)", (msgspec.json.encode(lag),)
                )

    def check_mode(self, partitioned: bool) -> None:
        """Refuse a state file written in the other mode: a single instance's checkpoint
        means nothing per partition, and partitions' mean nothing to a single instance."""
        with storage("state file", self.path):
            scopes = {row[0] for row in self._db.execute("SELECT scope FROM checkpoint")}
        single = ENGINE in scopes
        if partitioned == single and scopes:
            written, now = ("one instance", "scaled out") if single else ("scaled out", "alone")
            raise StateError(
                f"state file {self.path} was written by {written}, and this instance runs "
                f"{now} (STATE__CHANGELOG_TOPIC). Switch back, or start with a new "
                "STATE__PATH and KAFKA__GROUP_ID, which read the topics afresh."
            )

    def drop(self, scopes: Collection[str]) -> None:
        """Forget checkpoints (of partitions now kept by another instance)."""
        with storage("state file", self.path), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM checkpoint WHERE scope = ?", [(s,) for s in scopes])

    def close(self) -> None:
        self._db.close()


def read_checkpoint(db: sqlite3.Connection, path: Path, scope: str = ENGINE) -> Checkpoint | None:
    """The checkpoint of ``scope`` in an open state file, verified (:class:`CheckpointError`)."""
    with storage("state file", path):
        row = db.execute(
            "SELECT written_at, offsets, state, checksum FROM checkpoint WHERE scope = ?",
            (scope,),
        ).fetchone()
    return None if row is None else _decode(path, scope, *row)


def read_merged(db: sqlite3.Connection, path: Path) -> Checkpoint | None:
    """Every scope's checkpoint as one (the engine's, or each partition's when scaled
    out): models, alerts and offsets together, written when the newest was."""
    with storage("state file", path):
        rows = db.execute(
            "SELECT scope, written_at, offsets, state, checksum FROM checkpoint"
        ).fetchall()
    if not rows:
        return None
    merged = Checkpoint({"models": {}, "policy": {}, "router": {"triggered": {}}}, {}, 0.0)
    for row in rows:
        part = _decode(path, *row)
        merged.state["models"].update(part.state["models"])
        merged.state["policy"].update(part.state["policy"])
        merged.state["router"]["triggered"].update(part.state["router"]["triggered"])
        merged.offsets.update(part.offsets)
        merged = replace(merged, written_at=max(merged.written_at, part.written_at))
    return merged


def partition_scope(partition: int) -> str:
    return f"partition-{partition}"


def encode(state: Mapping[str, Any]) -> bytes:
    return msgspec.msgpack.encode(state)


def encode_offsets(offsets: Offsets) -> bytes:
    return msgspec.msgpack.encode([[t, p, o] for (t, p), o in sorted(offsets.items())])


def decode_offsets(blob: bytes) -> Offsets:
    return {(t, int(p)): int(o) for t, p, o in msgspec.msgpack.decode(blob)}


def checksum(offsets: bytes, state: bytes) -> bytes:
    """The digest a checkpoint record carries, in the state file and in the changelog:
    of its encoded offsets and state, checked before either is restored. It finds a byte
    changed on disk or on the way (it is no signature: whoever writes a record can
    write its checksum)."""
    digest = hashlib.blake2b(len(offsets).to_bytes(8, "big"), digest_size=16)
    digest.update(offsets)
    digest.update(state)
    return digest.digest()


def _decode(
    path: Path, scope: str, written_at: float, offsets: bytes, state: bytes, digest: bytes
) -> Checkpoint:
    where = f"state file {path}: the checkpoint of {scope}"
    if checksum(offsets, state) != digest:
        raise CheckpointError(
            f"{where} fails its checksum (changed since it was written) and is not "
            "restored. Move the file aside to start afresh from the offsets committed to "
            "Kafka (the models warm up again), or restore a backup of it.",
            path,
        )
    try:
        return Checkpoint(msgspec.msgpack.decode(state), decode_offsets(offsets), float(written_at))
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{where} is unreadable: {exc}. Move the file aside.", path) from exc


def read_lag(db: sqlite3.Connection) -> dict[str, int]:
    """The consumer lag per partition ("topic:partition") at the last checkpoint."""
    row = db.execute("SELECT value FROM meta WHERE key = 'lag'").fetchone()
    return {} if row is None else msgspec.json.decode(row[0], type=dict[str, int])


def copies(
    store: StateStore, partition: int, logged: tuple[bytes, Offsets] | StateError | None
) -> tuple[Checkpoint | None, tuple[bytes, Offsets] | None]:
    """A partition's state in the state file and in the changelog, either missing; one
    that is refused (a failed checksum, say) is passed over when the other is good, and
    refuses the partition when it is the only one."""
    refused: list[StateError] = []
    try:
        local = store.load(partition_scope(partition))
    except CheckpointError as exc:
        local = None
        refused.append(exc)
    if isinstance(logged, StateError):
        refused.append(logged)
        logged = None
    if refused and local is None and logged is None:
        reasons = "; ".join(map(str, refused))
        raise StateError(
            f"partition {partition}: no copy of its state can be restored ({reasons}); move "
            "the state file aside and name a new STATE__CHANGELOG_TOPIC to start it afresh",
            store.path,
        )
    for reason in refused:
        log.error(
            "a copy of a partition's state refused; the other restored",
            extra={"partition": partition, "error": str(reason)},
        )
    return local, logged


def covers(offsets: Offsets, other: Offsets) -> bool:
    """Whether ``offsets`` reach at least as far as ``other`` on every partition."""
    return all(offsets.get(tp, 0) >= o for tp, o in other.items())
