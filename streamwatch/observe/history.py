"""The history of closed windows: what each one concluded, kept for reports and ``status``.

A record per (model, window, role) holds every statistic with its threshold, severity
and sample sizes, the reference and current distributions of the columns that
breached, and the alerts the window changed. Records are written with the checkpoint,
in the same transaction, into the state file; a window evaluated again after a crash
replaces its record. Each model keeps its newest ``HISTORY__MAX_WINDOWS`` records, none
ending more than ``HISTORY__MAX_AGE`` (event time) before its newest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from streamwatch.alerting.policy import Notification
from streamwatch.config import HistorySettings
from streamwatch.detectors import Distribution, Finding, Severity
from streamwatch.errors import StateError, storage
from streamwatch.pipeline.monitor import ClosedWindow

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    model TEXT NOT NULL,
    start REAL NOT NULL,
    role TEXT NOT NULL,
    end REAL NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (model, start, role)
);
"""


WINDOW_ROLES = ("reference", "evaluated")  # a closed window's own record


class Statistic(msgspec.Struct, frozen=True):
    """One finding of a window; the explanation is kept only where it breached."""

    detector: str
    subject: str
    statistic: str
    value: float
    threshold: float
    severity: str
    n_reference: int
    n_current: int
    explanation: str = ""
    details: dict[str, float] = {}


class AlertChange(msgspec.Struct, frozen=True):
    """An alert the window started, repeated or resolved."""

    status: str
    severity: str
    detector: str
    subject: str
    statistic: str
    value: float
    summary: str
    repeated: bool = False


class WindowRecord(msgspec.Struct, frozen=True):
    model: str
    start: float
    end: float
    role: str  # one of WINDOW_ROLES, or "outcomes" (its labels), "review" (its verdicts)
    events: int
    statistics: list[Statistic] = []
    distributions: list[Distribution] = []
    alerts: list[AlertChange] = []

    def breaches(self) -> list[Statistic]:
        return [s for s in self.statistics if s.severity != Severity.OK.value]


def record(
    window: ClosedWindow, findings: Iterable[Finding], notification: Notification | None
) -> WindowRecord:
    """The history record of a closed window (its findings as the alerts show them)."""
    return WindowRecord(
        model=window.model,
        start=window.bounds.start,
        end=window.bounds.end,
        role=window.role,
        events=window.n,
        statistics=[_statistic(f) for f in findings],
        distributions=list(window.distributions),
        alerts=[
            AlertChange(
                a.status,
                a.labels["severity"],
                a.labels["detector"],
                a.labels["subject"],
                a.labels["statistic"],
                float(a.value),
                a.summary,
                a.repeated,
            )
            for a in (notification.alerts if notification else ())
        ],
    )


def _statistic(f: Finding) -> Statistic:
    breached = f.severity is not Severity.OK
    return Statistic(
        f.detector,
        f.subject,
        f.statistic,
        float(f.value),
        float(f.threshold),
        f.severity.value,
        int(f.n_reference),
        int(f.n_current),
        f.explanation if breached or f.detector == "labels" else "",
        {k: float(v) for k, v in f.details.items()},
    )


def write(
    db: sqlite3.Connection, records: Sequence[WindowRecord], keep: HistorySettings, by_age: bool
) -> None:
    """Insert (or replace) the records and prune their models, by age (``by_age``: time
    windows) and by count; inside the caller's transaction. Count windows are pruned
    by count alone: on a slow stream one window may span more than the age limit."""
    db.executemany(
        "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?)",
        [(r.model, r.start, r.role, r.end, msgspec.msgpack.encode(r)) for r in records],
    )
    for model in sorted({r.model for r in records}):
        if by_age:
            db.execute(
                "DELETE FROM history WHERE model = ? AND end < "
                "(SELECT max(end) FROM history WHERE model = ?) - ?",
                (model, model, keep.max_age),
            )
        db.execute(
            "DELETE FROM history WHERE model = ? AND rowid IN (SELECT rowid FROM history "
            "WHERE model = ? ORDER BY end DESC, role LIMIT -1 OFFSET ?)",
            (model, model, keep.max_windows),
        )


def read(path: Path, model: str | None = None, since: float | None = None) -> list[WindowRecord]:
    """The records of a state file, oldest first; of one model, and ending after
    ``since`` (epoch seconds), if given."""
    db = open_readonly(path)
    try:
        with storage("state file", path):
            return records(db, model, since)
    finally:
        db.close()


def records(
    db: sqlite3.Connection, model: str | None = None, since: float | None = None
) -> list[WindowRecord]:
    """The records of an open state file, as :func:`read` gives them."""
    try:
        rows = db.execute(
            "SELECT record FROM history WHERE (? IS NULL OR model = ?) "
            "AND (? IS NULL OR end > ?) ORDER BY model, end, role",
            (model, model, since, since),
        ).fetchall()
    except sqlite3.OperationalError:  # written before the history existed
        rows = []
    decoder = msgspec.msgpack.Decoder(WindowRecord)
    return [decoder.decode(blob) for (blob,) in rows]


def open_readonly(path: Path) -> sqlite3.Connection:
    """The state file opened for reading only (a running daemon may be writing it)."""
    if not path.is_file():
        raise StateError(
            f"no state file at {path}: name the daemon's (--state, or STATE__PATH)", path
        )
    with storage("state file", path):
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
