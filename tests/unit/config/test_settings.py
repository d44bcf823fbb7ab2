from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamwatch.cli import main
from streamwatch.config import FileSinkSettings, Settings, load_settings, parse_duration
from streamwatch.errors import ConfigError
from streamwatch.severity import Severity


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_need_no_configuration() -> None:
    settings = load_settings()
    assert settings.window.seconds == 300.0
    assert settings.kafka.topics == ("predictions",)
    assert list(settings.sinks) == ["log"]


def test_env_files_are_read_and_later_files_win(tmp_path: Path) -> None:
    first = write(
        tmp_path / "a.env",
        "STREAMWATCH_WINDOW__SIZE=1h\n"
        'STREAMWATCH_KAFKA__TOPICS=["predictions","labels"]\n'
        "STREAMWATCH_DETECTORS__FEATURE_DRIFT__NUMERIC_WARNING=0.2\n",
    )
    second = write(tmp_path / "b.env", "STREAMWATCH_WINDOW__SIZE=10m\n")
    settings = load_settings([first, second])
    assert settings.window.seconds == 600.0
    assert settings.kafka.topics == ("predictions", "labels")
    assert settings.detectors.feature_drift.thresholds("numeric") == (0.2, 0.25)


def test_environment_beats_env_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write(tmp_path / "a.env", "STREAMWATCH_WINDOW__SIZE=1h\n")
    monkeypatch.setenv("STREAMWATCH_WINDOW__SIZE", "2h")
    assert load_settings([env_file]).window.seconds == 7200.0


def test_named_sinks_with_a_kind(tmp_path: Path) -> None:
    env_file = write(
        tmp_path / "sinks.env",
        "STREAMWATCH_SINKS__AUDIT__KIND=file\n"
        "STREAMWATCH_SINKS__AUDIT__PATH=alerts.jsonl\n"
        "STREAMWATCH_SINKS__AUDIT__MIN_SEVERITY=critical\n"
        "STREAMWATCH_SINKS__CONSOLE__KIND=log\n",
    )
    sinks = load_settings([env_file]).sinks
    assert sinks["audit"] == FileSinkSettings(
        kind="file", path=Path("alerts.jsonl"), min_severity=Severity.CRITICAL
    )
    assert sinks["console"].kind == "log"


@pytest.mark.parametrize(
    ("line", "variable", "why"),
    [
        ("STREAMWATCH_WINDOW__SIZE=5 parsecs", "STREAMWATCH_WINDOW__SIZE", "not a duration"),
        ("STREAMWATCH_WINDOW__SIZEE=5m", "STREAMWATCH_WINDOW__SIZEE", "Extra inputs"),
        (
            "STREAMWATCH_KAFKA__MAX_FETCH_BYTES=5",
            "STREAMWATCH_KAFKA__MAX_FETCH_BYTES",
            "greater than or equal",
        ),
        (
            "STREAMWATCH_DETECTORS__FEATURE_DRIFT__ALPHA=2",
            "STREAMWATCH_DETECTORS__FEATURE_DRIFT__ALPHA",
            "less than 1",
        ),
        ("STREAMWATCH_SINKS__AUDIT__KIND=file", "STREAMWATCH_SINKS__AUDIT__PATH", "required"),
        ("STREAMWATCH_SINKS__AUDIT__KIND=pager", "STREAMWATCH_SINKS__AUDIT", "'pager'"),
    ],
)
def test_a_wrong_variable_is_named_with_the_reason(
    tmp_path: Path, line: str, variable: str, why: str
) -> None:
    env_file = write(tmp_path / "bad.env", line + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings([env_file])
    message = str(caught.value)
    assert f"{variable}:" in message
    assert why in message


def test_count_mode_alone_is_caught_with_the_default_size(tmp_path: Path) -> None:
    env_file = write(tmp_path / "c.env", "STREAMWATCH_WINDOW__MODE=count\n")
    with pytest.raises(ConfigError, match=r"STREAMWATCH_WINDOW__SIZE: .*'5m' is not a positive"):
        load_settings([env_file])


def test_count_windows_need_a_count(tmp_path: Path) -> None:
    env_file = write(
        tmp_path / "c.env", "STREAMWATCH_WINDOW__MODE=count\nSTREAMWATCH_WINDOW__SIZE=5m\n"
    )
    with pytest.raises(ConfigError, match="STREAMWATCH_WINDOW__SIZE"):
        load_settings([env_file])
    ok = write(
        tmp_path / "ok.env", "STREAMWATCH_WINDOW__MODE=count\nSTREAMWATCH_WINDOW__SIZE=10000\n"
    )
    assert load_settings([ok]).window.events == 10_000


def test_thresholds_must_be_ordered(tmp_path: Path) -> None:
    env_file = write(
        tmp_path / "t.env", "STREAMWATCH_DETECTORS__PREDICTION_DRIFT__CATEGORICAL_CRITICAL=0.01\n"
    )
    with pytest.raises(ConfigError, match="categorical_critical"):
        load_settings([env_file])


def test_secrets_come_from_files_named_like_their_variable(tmp_path: Path) -> None:
    (tmp_path / "streamwatch_kafka__sasl_password").write_text("hunter2")
    settings = load_settings(secrets_dir=tmp_path)
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)


def test_missing_env_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings([tmp_path / "nope.env"])


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.max_message_bytes = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("2d", 172800.0), (7, 7.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_check_config_masks_secrets_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = write(
        tmp_path / "s.env",
        "STREAMWATCH_KAFKA__SASL_USERNAME=svc\nSTREAMWATCH_KAFKA__SASL_PASSWORD=hunter2\n",
    )
    assert main(["check-config", "--env-file", str(env_file)]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out)
    assert printed["kafka"]["sasl_username"] == "svc"
    assert printed["kafka"]["sasl_password"] == "**********"
    assert "hunter2" not in out


def test_check_config_names_the_wrong_variable_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = write(tmp_path / "bad.env", "STREAMWATCH_WINDOW__ALLOWED_LATENESS=soon\n")
    assert main(["check-config", "--env-file", str(env_file)]) == 2
    assert "STREAMWATCH_WINDOW__ALLOWED_LATENESS" in capsys.readouterr().err


def test_the_example_env_files_are_valid() -> None:
    examples = sorted((Path(__file__).parents[3] / "config").glob("*.env"))
    assert examples
    for path in examples:
        load_settings([path])


def test_an_unknown_variable_in_an_env_file_is_named_as_written(tmp_path: Path) -> None:
    env_file = write(tmp_path / "t.env", "STREAMWATCH_WINDOWS__SIZE=5m\n")
    with pytest.raises(ConfigError) as error:
        load_settings([env_file])
    assert "  STREAMWATCH_WINDOWS__SIZE: Extra inputs are not permitted" in str(error.value)
