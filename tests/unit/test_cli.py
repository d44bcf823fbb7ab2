"""The CLI (cli.py): ``status`` over a state file, and an unusable state file ending the
command with one JSON line and exit code 2. ``replay``, ``check-config``, ``outbox`` and
``demo`` are run through ``main`` in the tests of what they drive (sources/test_replay.py,
config/, alerting/test_outbox.py, test_demo.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from streamwatch.cli import EXIT_CONFIG, main
from streamwatch.config import Settings, StateSettings
from streamwatch.observe import logs
from streamwatch.state.store import StateStore


def test_status_prints_what_the_state_file_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path, Settings(state=StateSettings(path=path))).close()
    assert main(["status", "--state", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: no checkpoint yet\n"


def test_a_state_file_that_is_not_there_ends_with_one_json_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = io.StringIO()
    configure = logs.configure
    monkeypatch.setattr(logs, "configure", lambda level: configure(level, lines))
    missing = tmp_path / "none.sqlite"
    assert main(["status", "--state", str(missing)]) == EXIT_CONFIG == 2
    (line,) = lines.getvalue().splitlines()  # one line, no traceback
    logged = json.loads(line)
    assert logged["level"] == "error"
    assert logged["message"].startswith(f"no state file at {missing}")
    assert logged["path"] == str(missing)
    assert capsys.readouterr().out == ""
