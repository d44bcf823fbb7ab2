"""The state file: checkpoints checked by their checksum, files refused with what to do."""

from __future__ import annotations

import logging
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from streamwatch.config import Settings, StateSettings, WindowSettings
from streamwatch.errors import CheckpointError, StateError
from streamwatch.events import Message, Offsets, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.state.store import FORMAT, StateStore, checksum, encode, partition_scope
from tests.factories import FakeChangelog, event

Leaf = tuple[tuple[Any, ...], float]


def settings(path: Path, changelog: str | None = None) -> Settings:
    return Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        state=StateSettings(path=path, changelog_topic=changelog),
    )


def monitored(s: Settings, changelog: FakeChangelog | None = None) -> Engine:
    """An engine past its reference window: model "m" with statistics of feature x."""
    engine = Engine(s, [], Metrics(CollectorRegistry()), changelog=changelog)  # type: ignore[arg-type]
    engine.process(
        [
            Message(
                event(f"e{i}", timestamp=i * 400, features={"x": (i * 37) % 101 / 7}),
                Origin("t", 0, i),
            )
            for i in range(600)  # four one-minute windows
        ]
    )
    return engine


def partition_state(engine: Engine, partition: int) -> tuple[bytes, Offsets]:
    """A partition's state, encoded, and the offsets it covers (as checkpointed)."""
    return engine.checkpointer.states([partition])[partition_scope(partition)]


def floats(node: Any, path: tuple[Any, ...] = ()) -> Iterator[Leaf]:
    """Every float in decoded state, with where it is."""
    if isinstance(node, float):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from floats(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from floats(value, (*path, index))


def at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def flipped(blob: bytes) -> tuple[bytes, tuple[Any, ...]]:
    """``blob`` with one byte changed inside a statistic of model "m" (a float64 that
    occurs once), so that it still decodes, to another value there; and where."""
    for path, value in floats(msgspec.msgpack.decode(blob)["models"]["m"], ("models", "m")):
        packed = b"\xcb" + struct.pack(">d", value)
        if value and blob.count(packed) == 1:
            i = blob.index(packed) + 2  # the highest byte of the mantissa
            return blob[:i] + bytes([blob[i] ^ 0x10]) + blob[i + 1 :], path
    raise AssertionError("no float statistic in the state")


def tamper(path: Path, scope: str, change: Any) -> None:
    """Rewrite one checkpoint's state in the file, as a bad disk would, checksum kept."""
    db = sqlite3.connect(path)
    with db:
        (blob,) = db.execute("SELECT state FROM checkpoint WHERE scope = ?", (scope,)).fetchone()
        db.execute("UPDATE checkpoint SET state = ? WHERE scope = ?", (change(blob), scope))
    db.close()


def test_a_checkpoint_round_trips_with_its_offsets(tmp_path: Path) -> None:
    s = settings(tmp_path / "s.sqlite")
    engine = monitored(s)
    store = StateStore(s.state.path, s)
    store.save(engine.checkpointer.state(None), engine.positions.next)
    loaded = store.load()
    store.close()
    assert loaded is not None
    assert loaded.offsets == {("t", 0): 600}
    assert encode(loaded.state) == encode(engine.checkpointer.state(None))


def test_a_flipped_byte_inside_a_statistic_is_refused_never_restored(tmp_path: Path) -> None:
    s = settings(tmp_path / "s.sqlite")
    engine = monitored(s)
    store = StateStore(s.state.path, s)
    store.save(engine.checkpointer.state(None), engine.positions.next)
    store.close()
    blob = encode(engine.checkpointer.state(None))
    changed, where = flipped(blob)
    # Without the checksum it would be restored: it decodes, with another statistic.
    assert at(msgspec.msgpack.decode(changed), where) != at(msgspec.msgpack.decode(blob), where)
    tamper(s.state.path, "engine", lambda _: changed)

    store = StateStore(s.state.path, s)
    with pytest.raises(CheckpointError, match="fails its checksum") as refused:
        store.load()
    store.close()
    assert refused.value.path == s.state.path
    assert str(s.state.path) in str(refused.value)
    assert "Move the file aside" in str(refused.value)


def test_offsets_are_covered_by_the_checksum_too(tmp_path: Path) -> None:
    s = settings(tmp_path / "s.sqlite")
    store = StateStore(s.state.path, s)
    store.save({"models": {}, "policy": {}, "router": {"triggered": {}}}, {("t", 0): 100})
    db = sqlite3.connect(s.state.path)
    with db:
        later = msgspec.msgpack.encode([["t", 0, 101]])  # a record that still decodes
        db.execute("UPDATE checkpoint SET offsets = ?", (later,))
    db.close()
    with pytest.raises(CheckpointError, match="fails its checksum"):
        store.load()
    store.close()


def test_the_checksum_is_of_offsets_and_state_apart() -> None:
    # The offsets' length is in the digest: bytes moved from one to the other are a change.
    assert checksum(b"ab", b"c") != checksum(b"a", b"bc")
    assert checksum(b"ab", b"c") == checksum(b"ab", b"c")
    assert len(checksum(b"", b"")) == 16


def test_a_partitions_refused_checkpoint_gives_way_to_the_changelogs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = FakeChangelog()
    s = settings(tmp_path / "e.sqlite", changelog="cl")
    engine = monitored(s, log)
    store = StateStore(s.state.path, s)
    engine.checkpointer.checkpoint(store)  # both copies at 600
    (blob, _), decode = partition_state(engine, 0), msgspec.msgpack.decode
    changed, where = flipped(blob)
    tamper(s.state.path, "partition-0", lambda _: changed)

    again = Engine(s, [], Metrics(CollectorRegistry()), changelog=log)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, "streamwatch.state.store"):
        assert again.rebalance.acquire({0}, store) == {("t", 0): 600}
    (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert line.getMessage() == "a copy of a partition's state refused; the other restored"
    restored = decode(partition_state(again, 0)[0])
    assert at(restored, where) == at(decode(blob), where) != at(decode(changed), where)
    copy = store.load("partition-0")  # the local copy replaced by the changelog's
    store.close()
    assert copy is not None
    assert copy.offsets == {("t", 0): 600}


def test_a_file_that_is_not_sqlite_is_refused_with_its_path_and_what_to_do(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"not a database, " * 512)
    with pytest.raises(StateError, match="file is not a database") as refused:
        StateStore(path, settings(path))
    assert refused.value.path == path
    assert str(refused.value).startswith(f"state file {path}: ")
    assert "move it aside" in str(refused.value)


def test_a_state_file_of_an_older_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    with db:  # format 5: no checksum column
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('format', '5')")
        db.execute(
            "CREATE TABLE checkpoint (scope TEXT PRIMARY KEY, written_at REAL NOT NULL, "
            "offsets BLOB NOT NULL, state BLOB NOT NULL)"
        )
    db.close()
    message = f"has format 5; this streamwatch reads format {FORMAT}. Move the file aside"
    with pytest.raises(StateError, match=message):
        StateStore(path, settings(path))
    assert FORMAT == 6


def test_a_directory_where_the_file_should_be_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.mkdir()
    with pytest.raises(StateError, match="unable to open database file") as refused:
        StateStore(path, settings(path))
    assert refused.value.path == path


def test_a_partitions_refused_changelog_record_gives_way_to_the_state_file(
    tmp_path: Path,
) -> None:
    log = FakeChangelog()
    s = settings(tmp_path / "e.sqlite", changelog="cl")
    engine = monitored(s, log)
    store = StateStore(s.state.path, s)
    engine.checkpointer.checkpoint(store)
    blob, offsets = partition_state(engine, 0)
    refused: dict[int, tuple[bytes, Offsets] | StateError] = {0: CheckpointError("checksum")}
    log.read = lambda partitions: refused  # type: ignore[method-assign]
    again = Engine(s, [], Metrics(CollectorRegistry()), changelog=log)  # type: ignore[arg-type]
    assert again.rebalance.acquire({0}, store) == offsets
    store.close()
    assert again.processor.models.keys() == {m for m, p in engine.ownership.homes.items() if p == 0}
    restored = msgspec.msgpack.decode(partition_state(again, 0)[0])
    assert restored["models"].keys() == msgspec.msgpack.decode(blob)["models"].keys()


def test_a_partition_whose_only_copy_is_refused_is_refused_clearly(tmp_path: Path) -> None:
    log = FakeChangelog()
    s = settings(tmp_path / "e.sqlite", changelog="cl")
    engine = monitored(s, log)
    store = StateStore(s.state.path, s)
    engine.checkpointer.checkpoint(store)
    changed, _ = flipped(partition_state(engine, 0)[0])
    tamper(s.state.path, "partition-0", lambda _: changed)
    log.records.clear()  # the changelog has no record of it (its write had failed)
    again = Engine(s, [], Metrics(CollectorRegistry()), changelog=log)  # type: ignore[arg-type]
    with pytest.raises(StateError, match="partition 0: no copy of its state") as refused:
        again.rebalance.acquire({0}, store)
    store.close()
    assert refused.value.path == s.state.path
    assert again.processor.models == {}


def test_a_state_file_of_the_other_mode_is_refused(tmp_path: Path) -> None:
    one = Settings(state=StateSettings(path=tmp_path / "one.sqlite"))
    store = StateStore(one.state.path, one)
    store.save({"models": {}, "policy": {}, "router": {"triggered": {}}}, {})
    store.check_mode(partitioned=False)
    with pytest.raises(StateError, match="written by one instance"):
        store.check_mode(partitioned=True)
    s = settings(tmp_path / "e.sqlite", changelog="cl")
    e = Engine(s, [], Metrics(CollectorRegistry()), changelog=FakeChangelog())  # type: ignore[arg-type]
    scaled_store = StateStore(s.state.path, s)
    e.process([Message(event("1", model_id="m"), Origin("t", 0, 0))])
    e.checkpointer.checkpoint(scaled_store)
    with pytest.raises(StateError, match="written by scaled out"):
        scaled_store.check_mode(partitioned=False)
