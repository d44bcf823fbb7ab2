"""The outbox: every notification is stored durably before any send, then delivered.

A row per (notification id, sink) in SQLite, written by the engine and read by one
delivery worker per sink, apart from the consume loop. A worker sends what is due, with
the sink's own timeout; a retryable failure (network, 429, 5xx) is tried again after
an exponential backoff with full jitter (at least the receiver's ``Retry-After``), until
the sink's ``max_attempts``; then, or on a failure that cannot succeed, the row is dead
and counted. Rows left pending by a shutdown or a crash are sent after restart. The id
is derived from the notification's content and the key is (id, sink), so the same
notification written twice (a window replayed after a crash) is stored, and sent, once.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from streamwatch.alerts import Notification
from streamwatch.config import Settings
from streamwatch.errors import EncodeError
from streamwatch.metrics import Metrics
from streamwatch.sinks import Delivered, DeliveryFailed, DeliveryResult, RoutedSink

log = logging.getLogger("streamwatch.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT NOT NULL,
    sink TEXT NOT NULL,
    status TEXT NOT NULL,           -- pending | sent | dead | silenced
    notification BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,              -- when the next attempt may start (epoch seconds)
    created REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (id, sink)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sink, status, due);
"""
IDLE_POLL = 1.0  # a worker looks for due rows at least this often
STOP_WAIT = 5.0  # seconds a stopping worker may take to finish its attempt


def outbox_path(settings: Settings) -> Path:
    """The outbox file: as configured, or beside the state file."""
    state = settings.state.path
    return settings.outbox.path or state.with_name(state.name + ".outbox")


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    sink: str
    notification: Notification
    attempts: int


class Outbox:
    """Notifications and their delivery state in one SQLite file (or in memory)."""

    def __init__(self, path: Path | None = None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            ":memory:" if path is None else path, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()  # one connection, shared by the engine and workers
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: survives a crash, fast
            self._db.executescript(_SCHEMA)

    def add(self, notification: Notification, sink: str, status: str = "pending") -> bool:
        """Store a notification for a sink; False when it was stored before. Raises
        :class:`EncodeError` when it cannot be encoded (then nothing is stored)."""
        try:
            blob = msgspec.msgpack.encode(notification)
        except (TypeError, ValueError, msgspec.EncodeError) as e:
            raise EncodeError(f"notification {notification.id} cannot be stored: {e}") from e
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO outbox (id, sink, status, notification, due, created) "
                "VALUES (?, ?, ?, ?, 0, ?)",  # due at once
                (notification.id, sink, status, blob, time.time()),
            )
        return cursor.rowcount == 1

    def due(self, sink: str, now: float, limit: int = 50) -> list[Row]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, notification, attempts FROM outbox "
                "WHERE sink = ? AND status = 'pending' AND due <= ? ORDER BY created LIMIT ?",
                (sink, now, limit),
            ).fetchall()
        return [
            Row(id_, sink, msgspec.msgpack.decode(blob, type=Notification), attempts)
            for id_, blob, attempts in rows
        ]

    def next_due(self, sink: str) -> float | None:
        with self._lock:
            (due,) = self._db.execute(
                "SELECT MIN(due) FROM outbox WHERE sink = ? AND status = 'pending'", (sink,)
            ).fetchone()
        return None if due is None else float(due)

    def mark(self, row: Row, status: str, due: float = 0.0, error: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET status = ?, attempts = ?, due = ?, error = ? "
                "WHERE id = ? AND sink = ?",
                (status, row.attempts + 1, due, error, row.id, row.sink),
            )

    def counts(self) -> dict[tuple[str, str], int]:
        """Rows by (sink, status)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sink, status, COUNT(*) FROM outbox GROUP BY sink, status"
            ).fetchall()
        return {(sink, status): int(n) for sink, status, n in rows}

    def pending(self) -> int:
        return sum(n for (_, status), n in self.counts().items() if status == "pending")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Dispatcher:
    """One delivery worker thread per sink, sending what the outbox holds."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Sequence[RoutedSink],
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.sinks = sinks
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self._stopping = threading.Event()
        self._wake = {routed.sink.name: threading.Event() for routed in sinks}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for routed in self.sinks:
            thread = threading.Thread(
                target=self._work, args=(routed,), name=f"deliver-{routed.sink.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """New rows are in the outbox."""
        for event in self._wake.values():
            event.set()

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while self.outbox.pending():
            if time.monotonic() >= deadline:
                return False
            self.wake()
            time.sleep(0.05)
        return True

    def stop(self, wait: float = STOP_WAIT) -> None:
        """Stop the workers after their current attempt, waiting ``wait`` seconds at most
        for all of them: a send still hanging then is left behind (a daemon thread), its
        row pending for the next start."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + wait
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._threads.clear()
        for routed in self.sinks:
            routed.sink.close()

    def _work(self, routed: RoutedSink) -> None:
        try:
            self._deliver(routed)
        except sqlite3.ProgrammingError:
            if not self._stopping.is_set():
                raise
            # Left behind at stop, it came back after the outbox closed: the row stays
            # pending and is sent after the next start.

    def _deliver(self, routed: RoutedSink) -> None:
        name, wake = routed.sink.name, self._wake[routed.sink.name]
        while not self._stopping.is_set():
            rows = self.outbox.due(name, self.clock())
            for row in rows:
                if self._stopping.is_set():
                    return
                self._attempt(routed, row)
            if not rows:
                next_due = self.outbox.next_due(name)
                wait = IDLE_POLL if next_due is None else next_due - self.clock()
                wake.wait(min(max(wait, 0.0), IDLE_POLL))
                wake.clear()

    def _attempt(self, routed: RoutedSink, row: Row) -> None:
        result = _send(routed, row.notification)
        sink, settings = routed.sink.name, routed.settings
        if isinstance(result, Delivered):
            self.outbox.mark(row, "sent")
            self.metrics.notifications.labels(sink, "sent").inc()
            return
        attempts = row.attempts + 1
        if result.retryable and attempts < settings.max_attempts:
            backoff = self.rng.uniform(
                0, min(settings.retry_cap, settings.retry_base * 2**row.attempts)
            )
            # Retry-After is honoured up to the cap: a receiver cannot park a row forever.
            asked = min(result.retry_after or 0.0, settings.retry_cap)
            delay = max(backoff, asked)
            self.outbox.mark(row, "pending", self.clock() + delay, result.reason)
            self.metrics.notifications.labels(sink, "retried").inc()
            log.warning(
                "notification not delivered, will retry",
                extra={
                    "sink": sink,
                    "notification": row.id,
                    "attempt": attempts,
                    "retry_in_seconds": round(delay, 3),
                    "reason": result.reason,
                },
            )
            return
        self.outbox.mark(row, "dead", error=result.reason)
        self.metrics.notifications.labels(sink, "dead").inc()
        log.error(
            "notification dead",
            extra={
                "sink": sink,
                "notification": row.id,
                "attempts": attempts,
                "reason": result.reason,
            },
        )


def _send(routed: RoutedSink, notification: Notification) -> DeliveryResult:
    """A sink's send, which should not raise; a bug in one must not stop its worker."""
    try:
        return routed.sink.send(notification)
    except Exception as exc:  # the worker must outlive any sink's bug
        log.exception("sink raised", extra={"sink": routed.sink.name})
        return DeliveryFailed(routed.sink.name, f"sink raised {type(exc).__name__}", True)
