"""Changelog records: a partition's checkpoint, checked by the same checksum as the file's."""

from __future__ import annotations

import zlib
from pathlib import Path

import msgspec
import pytest

from streamwatch.config import Settings, WindowSettings
from streamwatch.errors import StateError
from streamwatch.scaleout import changelog
from streamwatch.state.store import encode_offsets, shape
from tests.factories import FakeChangelog
from tests.unit.state.test_store import at, flipped, monitored, partition_state, settings

SHAPE = "0123456789abcdef"


def record(tmp_path: Path) -> tuple[bytes, bytes]:
    """A partition's encoded state (model "m" past its reference) and its record."""
    engine = monitored(settings(tmp_path / "s.sqlite", changelog="cl"), FakeChangelog())
    blob, offsets = partition_state(engine, 0)
    return blob, changelog.encode(blob, offsets, SHAPE)


def test_a_record_round_trips(tmp_path: Path) -> None:
    blob, value = record(tmp_path)
    assert changelog.decode(value, SHAPE, "here") == (blob, {("t", 0): 600})


def test_a_record_whose_state_changed_but_still_decodes_is_refused(tmp_path: Path) -> None:
    blob, value = record(tmp_path)
    changed, where = flipped(blob)
    decode = msgspec.msgpack.decode
    assert at(decode(changed), where) != at(decode(blob), where)  # another statistic
    fields = decode(value)  # format, shape, offsets, state, checksum
    fields[3] = zlib.compress(changed)  # the compression is intact: only the checksum tells
    tampered = msgspec.msgpack.encode(fields)
    with pytest.raises(StateError, match=r"changelog cl\[0\] fails its checksum"):
        changelog.decode(tampered, SHAPE, "changelog cl[0]")


def test_a_record_whose_offsets_changed_is_refused(tmp_path: Path) -> None:
    _, value = record(tmp_path)
    fields = msgspec.msgpack.decode(value)
    fields[2] = encode_offsets({("t", 0): 601})
    with pytest.raises(StateError, match="fails its checksum"):
        changelog.decode(msgspec.msgpack.encode(fields), SHAPE, "here")


def test_a_record_of_the_format_before_checksums_is_refused_as_another_format(
    tmp_path: Path,
) -> None:
    _, value = record(tmp_path)
    old = msgspec.msgpack.decode(value)[:4]
    old[0] = 5
    with pytest.raises(StateError, match="written by another streamwatch format"):
        changelog.decode(msgspec.msgpack.encode(old), SHAPE, "here")


def test_a_changelog_record_of_other_settings_is_refused() -> None:
    s = Settings()
    value = changelog.encode(b"\x80", {("t", 0): 5}, shape(s))
    assert changelog.decode(value, shape(s), "here") == (b"\x80", {("t", 0): 5})
    other = Settings(window=WindowSettings(size="1h"))
    with pytest.raises(StateError, match="other window or detector settings"):
        changelog.decode(value, shape(other), "here")
    with pytest.raises(StateError, match="unreadable"):
        changelog.decode(b"\x01garbage", shape(s), "here")
