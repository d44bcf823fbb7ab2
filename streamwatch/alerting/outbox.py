"""The outbox: every notification is stored durably before any send.

A row per (notification id, sink) in SQLite, written by the engine and read by the
delivery workers (dispatcher.py). The id is derived from the notification's content
and the key is (id, sink), so the same notification written twice (a window replayed
after a crash) is stored, and sent, once.

A row's life: ``held`` while the checkpoint that covers its window is not yet durable
(whoever restores an older state closes the window again and makes the same row), then
``pending`` until it is ``sent``, or ``dead`` (a failure that cannot succeed, or
retried past ``OUTBOX__MAX_AGE``); ``silenced`` rows are a record, never sent. Dead
rows can be made pending again (``streamwatch outbox retry``). Scaled out, a row is
sent by whoever holds its model's partition: the undelivered rows travel with the
partition's state, and are ``moved`` where it was (pending again if it comes back).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from streamwatch.alerting.policy import Notification
from streamwatch.config import Settings
from streamwatch.errors import EncodeError, storage
from streamwatch.review.request import ReviewRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT NOT NULL,
    sink TEXT NOT NULL,
    status TEXT NOT NULL,           -- held | pending | sent | dead | silenced | moved
    notification BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,              -- when the next attempt may start (epoch seconds)
    created REAL NOT NULL,          -- when it was stored (or retried by hand)
    error TEXT,
    model TEXT,
    kind TEXT NOT NULL DEFAULT 'alert',  -- alert (a notification) | review (a request)
    PRIMARY KEY (id, sink)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sink, status, due);
"""
STATUSES = ("held", "pending", "sent", "dead", "silenced", "moved")
Item = Notification | ReviewRequest  # what a row delivers
_TYPES: dict[str, type[Item]] = {"alert": Notification, "review": ReviewRequest}


def _kind(item: Item) -> str:
    return "review" if isinstance(item, ReviewRequest) else "alert"


def outbox_path(settings: Settings) -> Path:
    """The outbox file: as configured, or beside the state file."""
    state = settings.state.path
    return settings.outbox.path or state.with_name(state.name + ".outbox")


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    sink: str
    notification: Item
    attempts: int
    created: float


class Carried(msgspec.Struct, array_like=True, frozen=True):
    """An undelivered row as it travels with its partition's state (scaled out)."""

    id: str
    sink: str
    notification: bytes
    model: str
    kind: str = "alert"


@dataclass(frozen=True, slots=True)
class Listed:
    """A row as ``streamwatch outbox list`` shows it."""

    id: str
    sink: str
    status: str
    model: str | None
    attempts: int
    created: float
    error: str | None


class Outbox:
    """Notifications and their delivery state in one SQLite file (or in memory)."""

    def __init__(self, path: Path | None = None) -> None:
        """Open (or create) the outbox; a file that cannot be used (damaged, read-only,
        a full disk), now or at any write later, raises :class:`StateError`."""
        self.path = Path(":memory:") if path is None else path
        self._lock = threading.Lock()  # one connection, shared by the engine and workers
        self._closed = False
        with self._lock, storage("outbox", self.path):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: survives a crash, fast
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            if "model" not in columns:  # a file written before rows knew their model
                self._db.execute("ALTER TABLE outbox ADD COLUMN model TEXT")
            if "kind" not in columns:  # a file written before review requests
                self._db.execute("ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'alert'")

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, to one caller at a time; its errors as :class:`StateError`."""
        with self._lock, storage("outbox", self.path):
            yield self._db

    def add(self, notification: Item, sink: str, status: str = "pending") -> bool:
        """Store a notification (or a review request) for a sink; False when it was
        stored before. Raises :class:`EncodeError` when it cannot be encoded (then
        nothing is stored)."""
        id_ = notification.id
        try:
            blob = msgspec.msgpack.encode(notification)
        except (TypeError, ValueError, msgspec.EncodeError) as e:
            raise EncodeError(f"notification {id_} cannot be stored: {e}") from e
        with self._using() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox "
                "(id, sink, status, notification, due, created, model, kind) "
                "VALUES (?, ?, ?, ?, 0, ?, ?, ?)",  # due at once
                (id_, sink, status, blob, time.time(), notification.model, _kind(notification)),
            )
        return cursor.rowcount == 1

    def release(self, ids: Collection[str]) -> int:
        """Held rows of these notifications become pending (their state is durable)."""
        with self._using() as db:
            return sum(
                db.execute(
                    "UPDATE outbox SET status = 'pending' WHERE id = ? AND status = 'held'",
                    (id_,),
                ).rowcount
                for id_ in ids
            )

    def undelivered(self, models: Collection[str] | None) -> list[Carried]:
        """The held and pending rows of ``models`` (or of all): what a state carries."""
        with self._using() as db:
            rows = db.execute(
                "SELECT id, sink, notification, model, kind FROM outbox "
                "WHERE status IN ('held', 'pending') ORDER BY created, id, sink"
            ).fetchall()
        return [
            Carried(id_, sink, bytes(blob), model, kind)
            for id_, sink, blob, model, kind in rows
            if models is None or model in models
        ]

    def adopt(self, rows: Iterable[Carried]) -> int:
        """Rows carried by a restored partition state, pending here unless known (sent,
        say, by this instance before the partition went away and came back): a row
        moved away with its partition is pending again."""
        now = time.time()
        with self._using() as db:
            return sum(
                db.execute(
                    "INSERT INTO outbox "
                    "(id, sink, status, notification, due, created, model, kind) "
                    "VALUES (?, ?, 'pending', ?, 0, ?, ?, ?) ON CONFLICT (id, sink) DO UPDATE "
                    "SET status = 'pending', due = 0 WHERE status = 'moved'",
                    (row.id, row.sink, row.notification, now, row.model, row.kind),
                ).rowcount
                for row in rows
            )

    def move(self, models: Collection[str]) -> int:
        """The held and pending rows of ``models``, whose partitions another instance
        holds now: never sent from here."""
        with self._using() as db:
            return sum(
                db.execute(
                    "UPDATE outbox SET status = 'moved' "
                    "WHERE model = ? AND status IN ('held', 'pending')",
                    (model,),
                ).rowcount
                for model in models
            )

    def due(self, sink: str, now: float, limit: int = 50) -> list[Row]:
        with self._using() as db:
            rows = db.execute(
                "SELECT id, notification, attempts, created, kind FROM outbox "
                "WHERE sink = ? AND status = 'pending' AND due <= ? ORDER BY created LIMIT ?",
                (sink, now, limit),
            ).fetchall()
        return [
            Row(id_, sink, msgspec.msgpack.decode(blob, type=_TYPES[kind]), attempts, created)
            for id_, blob, attempts, created, kind in rows
        ]

    def next_due(self, sink: str) -> float | None:
        with self._using() as db:
            (due,) = db.execute(
                "SELECT MIN(due) FROM outbox WHERE sink = ? AND status = 'pending'", (sink,)
            ).fetchone()
        return None if due is None else float(due)

    def mark(self, row: Row, status: str, due: float = 0.0, error: str | None = None) -> None:
        """An attempt's outcome; none for a row moved away meanwhile (its partition's
        next owner has it)."""
        with self._using() as db:
            db.execute(
                "UPDATE outbox SET status = ?, attempts = ?, due = ?, error = ? "
                "WHERE id = ? AND sink = ? AND status = 'pending'",
                (status, row.attempts + 1, due, error, row.id, row.sink),
            )

    def listed(self, sink: str | None = None, status: str | None = None) -> list[Listed]:
        """Rows, oldest first, of one sink and status or of all."""
        with self._using() as db:
            rows = db.execute(
                "SELECT id, sink, status, model, attempts, created, error FROM outbox "
                "WHERE (:sink IS NULL OR sink = :sink) AND (:status IS NULL OR status = :status) "
                "ORDER BY created, id, sink",
                {"sink": sink, "status": status},
            ).fetchall()
        return [Listed(*row) for row in rows]

    def retry(self, sink: str | None = None) -> int:
        """Dead rows (of one sink, or all) pending again, with a fresh ``MAX_AGE``."""
        with self._using() as db:
            return int(
                db.execute(
                    "UPDATE outbox SET status = 'pending', attempts = 0, due = 0, "
                    "created = :now, error = NULL "
                    "WHERE status = 'dead' AND (:sink IS NULL OR sink = :sink)",
                    {"now": time.time(), "sink": sink},
                ).rowcount
            )

    def counts(self) -> dict[tuple[str, str], int]:
        """Rows by (sink, status)."""
        with self._using() as db:
            rows = db.execute(
                "SELECT sink, status, COUNT(*) FROM outbox GROUP BY sink, status"
            ).fetchall()
        return {(sink, status): int(n) for sink, status, n in rows}

    def backlog(self) -> dict[str, int]:
        """Pending rows per sink (for /metrics, scraped until the daemon exits): none
        once closed."""
        with self._using() as db:
            if self._closed:
                return {}
            rows = db.execute(
                "SELECT sink, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY sink"
            ).fetchall()
        return {sink: int(n) for sink, n in rows}

    def pending(self, sinks: Collection[str] | None = None) -> int:
        """Rows waiting to be sent (of ``sinks``, or of all)."""
        return sum(
            n
            for (sink, status), n in self.counts().items()
            if status == "pending" and (sinks is None or sink in sinks)
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()
