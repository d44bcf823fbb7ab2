from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from streamwatch.cli import main
from streamwatch.errors import SourceError
from streamwatch.sources import ReplaySource
from tests.factories import event


def write_stream(path: Path, lines: list[bytes]) -> Path:
    data = b"\n".join(lines) + b"\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as out:
            out.write(data)
    else:
        path.write_bytes(data)
    return path


def test_replay_source_batches_lines_with_their_origin(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "s.jsonl.gz", [b"a", b"", b"b", b"c"])
    source = ReplaySource([path])
    first = source.poll(2)
    assert first is not None
    assert [(raw, o.offset) for raw, o in first.messages()] == [(b"a", 1), (b"b", 3)]
    second = source.poll(2)
    assert second is not None
    assert [(raw, o.topic) for raw, o in second.messages()] == [(b"c", str(path))]
    assert source.poll(2) is None


def test_missing_files_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        ReplaySource([tmp_path / "missing.jsonl"])


def test_replay_with_bad_lines_runs_to_the_end_and_summarises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = []
    for i in range(3000):
        lines.append(event(f"e{i}", timestamp=i * 1000, features={"x": float(i % 13)}))
        if i % 500 == 0:
            lines += [b"{broken", b'{"event_id": "x"}', b"[]"]
    lines.append(event("late", timestamp=5_000))  # its minute closed long ago
    lines.append(event("lbl", label=1))
    path = write_stream(tmp_path / "stream.jsonl", lines)
    env = tmp_path / "w.env"
    env.write_text("STREAMWATCH_WINDOW__SIZE=5m\nSTREAMWATCH_WINDOW__ALLOWED_LATENESS=0\n")
    assert main(["replay", str(path), "--env-file", str(env)]) == 0
    out = capsys.readouterr().out
    assert "events windowed 3,000" in out
    assert "bad events      18 (invalid_json 6, missing_field 6, not_an_object 6)" in out
    assert "late events     1" in out
    assert "label events    1" in out
    assert "windows closed  10 (4 reference)" in out  # 3000 s in 5-minute windows


def test_replay_of_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # 2: the replay could not run; its 1 says that alerts fired (--fail-on).
    assert main(["replay", "/nonexistent/stream.jsonl"]) == 2
    assert "no such file" in capsys.readouterr().err
