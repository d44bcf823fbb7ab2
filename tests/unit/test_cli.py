"""The CLI (cli.py): ``status`` over a state file, and an unusable state file ending the
command with one JSON line and exit code 2; ``replay --fail-on``'s exit codes, for CI;
``test-alert`` sending the configured extra labels. ``replay``, ``check-config``,
``outbox`` and ``demo`` are otherwise run through ``main`` in the tests of what they
drive (sources/test_replay.py, config/, alerting/test_outbox.py, test_demo.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from streamwatch.cli import EXIT_CONFIG, main
from streamwatch.config import Settings, StateSettings
from streamwatch.observe import logs
from streamwatch.state.store import StateStore
from tests.factories import event


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


def predictions(path: Path, shift: float, seed: int) -> Path:
    """3000 predictions of model m, one every 0.2 s, with feature x ~ N(shift, 1)."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(shift, 1.0, 3000).tolist()
    lines = [
        event(f"e{seed}-{i}", timestamp=1_700_000_000_000 + i * 200, features={"x": x})
        for i, x in enumerate(xs)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
def pinned(tmp_path: Path) -> Path:
    """An env file pinning a reference of N(0, 1), with 5-minute windows."""
    reference = predictions(tmp_path / "reference.jsonl", 0.0, seed=1)
    env_file = tmp_path / "ci.env"
    env_file.write_text(f"STREAMWATCH_REFERENCE__PATH={reference}\nSTREAMWATCH_WINDOW__SIZE=5m\n")
    return env_file


@pytest.mark.parametrize(
    ("shift", "fail_on", "code", "printed"),
    [
        (0.0, "warning", 0, "no alert of warning or worse fired"),
        (0.15, "critical", 0, "no alert of critical or worse fired"),
        (
            0.15,
            "warning",
            1,
            "fired at warning or worse (--fail-on): 1 alert\n"
            "  warning  m               feature_drift        x",
        ),
        (
            1.0,
            "critical",
            1,
            "fired at critical or worse (--fail-on): 1 alert\n"
            "  critical m               feature_drift        x",
        ),
    ],
)
def test_replay_fail_on_exits_1_when_an_alert_of_that_severity_fired(
    tmp_path: Path,
    pinned: Path,
    capsys: pytest.CaptureFixture[str],
    shift: float,
    fail_on: str,
    code: int,
    printed: str,
) -> None:
    candidate = predictions(tmp_path / "candidate.jsonl", shift, seed=2)
    argv = ["replay", str(candidate), "--env-file", str(pinned), "--fail-on", fail_on]
    assert main(argv) == code
    assert capsys.readouterr().out.endswith(printed + "\n")


def test_replay_without_fail_on_exits_0_whatever_fired(
    tmp_path: Path, pinned: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    candidate = predictions(tmp_path / "candidate.jsonl", 1.0, seed=2)
    assert main(["replay", str(candidate), "--env-file", str(pinned)]) == 0
    assert "alerts          2 firing, 0 resolved" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--env-file", "{tmp}/missing.env"],  # no env file
        ["--env-file", "{tmp}/bad.env"],  # a wrong setting
        ["--fail-on", "ok"],  # not a level
    ],
)
def test_replay_that_cannot_run_exits_2(
    tmp_path: Path, pinned: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    candidate = predictions(tmp_path / "candidate.jsonl", 1.0, seed=2)
    (tmp_path / "bad.env").write_text("STREAMWATCH_WINDOW__SIZE=soon\n")
    args = [a.format(tmp=tmp_path) for a in argv]
    try:
        code = main(["replay", str(candidate), "--fail-on", "warning", *args])
    except SystemExit as exit_:  # argparse's own exit for a wrong option
        code = int(str(exit_.code))
    assert code == 2
    assert capsys.readouterr().out == ""


def test_a_replay_that_breaks_exits_2_not_1(
    tmp_path: Path,
    pinned: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("streamwatch.pipeline.engine.Engine.run", broken)
    candidate = predictions(tmp_path / "candidate.jsonl", 1.0, seed=2)
    argv = ["replay", str(candidate), "--env-file", str(pinned), "--fail-on", "warning"]
    assert main(argv) == 2  # 1 would read as "alerts fired"


def test_test_alert_sends_the_configured_extra_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = tmp_path / "sent.jsonl"
    env_file = tmp_path / "sinks.env"
    env_file.write_text(
        "STREAMWATCH_SINKS__AUDIT__KIND=file\n"
        f"STREAMWATCH_SINKS__AUDIT__PATH={sent}\n"
        'STREAMWATCH_ALERTS__LABELS={"team": "risk", "model": "not-the-test-model"}\n'
    )
    assert main(["test-alert", "--env-file", str(env_file)]) == 0
    assert "audit            delivered" in capsys.readouterr().out
    (alert,) = json.loads(sent.read_text())["alerts"]
    assert alert["labels"]["team"] == "risk"
    assert alert["labels"]["model"] == "streamwatch-test"  # its own label wins
