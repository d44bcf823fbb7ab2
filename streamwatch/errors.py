"""The exceptions streamwatch raises, in one hierarchy."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StreamwatchError(Exception):
    """Base of every error streamwatch raises on purpose."""


class ConfigError(StreamwatchError):
    """The settings are invalid; the message names the variable and why."""


class SourceError(StreamwatchError):
    """A source cannot be read (missing file, unreachable broker)."""


class StateError(StreamwatchError):
    """A state file cannot be used: unreadable, another format, other settings, a
    checkpoint that fails its checksum, a disk that refuses the writes. ``path`` is the
    file, where one is concerned."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class CheckpointError(StateError):
    """A checkpoint record refused: it fails its checksum, or cannot be decoded."""


class ChangelogError(StreamwatchError):
    """A partition's state could not be written to the changelog topic."""


class EncodeError(StreamwatchError):
    """A notification could not be encoded for the outbox (a value that is not plain data)."""


_FULL = "free space on its disk (or give it a larger volume), then start again"
_READONLY = "make it and its directory writable by streamwatch, or name a writable path"
_DAMAGED = "move it aside (keep it to look into) to start afresh, or restore a backup"


@contextmanager
def storage(what: str, path: Path) -> Iterator[None]:
    """Turn SQLite's and the file system's errors on ``path`` (the ``what``: "state file",
    "outbox") into a :class:`StateError` that names the file and says what to do, so that
    a full disk or a damaged file ends the daemon with one clear line, not a traceback."""
    try:
        yield
    except (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError):
        raise  # a mistake in the SQL or its use, not the file's fault
    except sqlite3.Error as exc:
        raise StateError(f"{what} {path}: {exc}; {_advice(exc)}", path) from exc
    except OSError as exc:
        raise StateError(f"{what} {path}: {exc.strerror or exc}; {_advice(exc)}", path) from exc


def _advice(exc: sqlite3.Error | OSError) -> str:
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return _FULL
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return _READONLY
        return "check the disk and the path"
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    if code == sqlite3.SQLITE_FULL:
        return _FULL
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return _READONLY
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return _DAMAGED
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return "another process holds it: run one streamwatch per file"
    if code == sqlite3.SQLITE_IOERR:  # SQLite keeps no errno: EFBIG, EIO, ... look alike
        return "check the disk (full? failing?) and the path, then start again"
    return "check the disk and the file"
