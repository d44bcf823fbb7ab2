"""The exceptions (errors.py): one hierarchy, and the file system's and SQLite's errors
on a file turned into one line that names the file and says what to do."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from streamwatch.errors import (
    ChangelogError,
    CheckpointError,
    ConfigError,
    EncodeError,
    SourceError,
    StateError,
    StreamwatchError,
    storage,
)


def test_every_error_raised_on_purpose_is_a_streamwatch_error() -> None:
    for kind in (ConfigError, SourceError, StateError, ChangelogError, EncodeError):
        assert issubclass(kind, StreamwatchError)
    refused = CheckpointError("fails its checksum", Path("/var/lib/s.sqlite"))
    assert isinstance(refused, StateError)  # refused like any unusable state file
    assert refused.path == Path("/var/lib/s.sqlite")
    assert str(refused) == "fails its checksum"
    assert StateError("no file").path is None


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free space on its disk (or give it a larger volume), then start again"),
        (errno.EROFS, "make it and its directory writable by streamwatch, or name a writable path"),
        (
            errno.EACCES,
            "make it and its directory writable by streamwatch, or name a writable path",
        ),
        (errno.EIO, "check the disk and the path"),
    ],
)
def test_a_file_system_error_names_the_file_and_what_to_do(code: int, advice: str) -> None:
    path = Path("/data/state.sqlite")
    cause = OSError(code, "the system's words")
    with pytest.raises(StateError) as refused, storage("state file", path):
        raise cause
    assert str(refused.value) == f"state file {path}: the system's words; {advice}"
    assert refused.value.path == path
    assert refused.value.__cause__ is cause


def test_a_file_that_is_not_a_database_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"not a database, " * 512)
    db = sqlite3.connect(path)
    with pytest.raises(StateError) as refused, storage("outbox", path):
        db.execute("SELECT * FROM sqlite_master")
    db.close()
    assert str(refused.value) == (
        f"outbox {path}: file is not a database; move it aside (keep it to look into) "
        "to start afresh, or restore a backup"
    )
    assert refused.value.path == path


def test_a_read_only_database_must_be_made_writable(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    sqlite3.connect(path).close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with (
        pytest.raises(StateError, match="make it and its directory writable"),
        storage("state file", path),
    ):
        db.execute("CREATE TABLE t (x)")
    db.close()


def test_a_database_another_process_holds_says_to_run_one_per_file(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        with (
            pytest.raises(StateError, match="another process holds it: run one streamwatch"),
            storage("state file", path),
        ):
            other.execute("CREATE TABLE t (x)")
    finally:
        other.close()
        holder.execute("ROLLBACK")
        holder.close()


def test_a_mistake_in_the_sql_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.sqlite")
    with pytest.raises(sqlite3.ProgrammingError), storage("state file", tmp_path):
        db.execute("SELECT ?", ())  # a binding missing: the code's fault
    db.close()
