"""Variables as settings: a ``STREAMWATCH_`` variable of the process environment that is
no setting is refused, as an env file's is; a value that is not the JSON its setting
takes is named by its variable, not its section."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamwatch.cli import main
from streamwatch.config import Settings, load_settings
from streamwatch.config.variables import unknown_names
from streamwatch.errors import ConfigError


@pytest.mark.parametrize(
    "name",
    [
        "STREAMWATCH_WINDOWS__SIZE",  # no such section
        "streamwatch_windows__size",  # read in any case, so refused in any case
        "STREAMWATCH_WINDOW_SIZE",  # one underscore: no section window_size
        "STREAMWATCH_MAX_MODELS__LIMIT",  # below a number
        "STREAMWATCH_KAFKA_CACHE",  # what the test tooling's variables were called
    ],
)
def test_check_config_refuses_a_misspelt_variable_of_the_environment(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, "5m")
    assert main(["check-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"streamwatch: invalid configuration:\n  {name}: Extra inputs are not permitted\n"
    )


def test_what_kubernetes_sets_for_a_service_named_streamwatch_is_let_be(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # enableServiceLinks (on by default) gives every pod of the namespace these.
    links = {
        "STREAMWATCH_SERVICE_HOST": "10.0.0.7",
        "STREAMWATCH_SERVICE_PORT": "9108",
        "STREAMWATCH_SERVICE_PORT_METRICS": "9108",
        "STREAMWATCH_PORT": "tcp://10.0.0.7:9108",
        "STREAMWATCH_PORT_9108_TCP": "tcp://10.0.0.7:9108",
        "STREAMWATCH_PORT_9108_TCP_PROTO": "tcp",
        "STREAMWATCH_PORT_9108_TCP_PORT": "9108",
        "STREAMWATCH_PORT_9108_TCP_ADDR": "10.0.0.7",
    }
    for name, value in links.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config"]) == 0
    capsys.readouterr()
    assert unknown_names(Settings, ["STREAMWATCH_PORTS", "STREAMWATCH_SERVICE"]) == [
        "STREAMWATCH_PORTS",
        "STREAMWATCH_SERVICE",
    ]


def test_variables_below_sections_dicts_and_sinks_of_any_kind_are_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = {
        "STREAMWATCH_WINDOW__SIZE": "10m",
        "STREAMWATCH_ALERTS__LABELS__TEAM": "risk",
        "STREAMWATCH_ALERTS__HYSTERESIS__FIRE_AFTER": "2",
        "STREAMWATCH_ALERTS__HYSTERESIS__OF_LAST": "3",
        "STREAMWATCH_SINKS__OPS__KIND": "webhook",
        "STREAMWATCH_SINKS__OPS__URL": "https://example.com/hook",
        "STREAMWATCH_SINKS__OPS__HEADERS__X_TOKEN": "t",
        "STREAMWATCH_KAFKA": '{"topics": ["p"]}',
    }
    assert unknown_names(Settings, variables) == []
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.window.seconds == 600.0
    assert settings.alerts.labels == {"team": "risk"}
    assert settings.kafka.topics == ("p",)


def test_a_field_of_another_kind_is_refused_by_the_sinks_own_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMWATCH_SINKS__AUDIT__KIND", "file")
    monkeypatch.setenv("STREAMWATCH_SINKS__AUDIT__PATH", "alerts.jsonl")
    monkeypatch.setenv("STREAMWATCH_SINKS__AUDIT__URL", "https://example.com")
    with pytest.raises(ConfigError, match="STREAMWATCH_SINKS__AUDIT__URL: Extra inputs"):
        load_settings()


def test_an_unknown_variable_in_both_an_env_file_and_the_environment_is_named_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text("STREAMWATCH_WINDOWS__SIZE=5m\nSTREAMWATCH_WINDOW__SIZE=soon\n")
    monkeypatch.setenv("STREAMWATCH_WINDOWS__SIZE", "5m")
    with pytest.raises(ConfigError) as raised:
        load_settings([env_file])
    lines = str(raised.value).splitlines()[1:]
    assert lines == [
        "  STREAMWATCH_WINDOW__SIZE: Value error, 'soon' is not a duration such as 30s, 5m, 1h "
        "or 1d",
        "  STREAMWATCH_WINDOWS__SIZE: Extra inputs are not permitted",
    ]


def test_bad_json_in_the_environment_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMWATCH_KAFKA__TOPICS", "predictions,labels")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "streamwatch: invalid configuration:\n  STREAMWATCH_KAFKA__TOPICS: not valid JSON ("
    )
    assert "predictions" not in err


def test_bad_json_in_an_env_file_names_its_variable(tmp_path: Path) -> None:
    env_file = tmp_path / "a.env"
    env_file.write_text('STREAMWATCH_ALERTS__LABELS={"team": risk}\n')
    with pytest.raises(ConfigError, match=r"\n  STREAMWATCH_ALERTS__LABELS: not valid JSON \("):
        load_settings([env_file])


def test_bad_json_in_a_secret_file_names_its_variable(tmp_path: Path) -> None:
    (tmp_path / "streamwatch_sinks__chat__kind").write_text("apprise")
    (tmp_path / "streamwatch_sinks__chat__urls").write_text("slack://T0K3N/B/C\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(secrets_dir=tmp_path)
    assert "STREAMWATCH_SINKS__CHAT__URLS: not valid JSON" in str(raised.value)
    assert "T0K3N" not in str(raised.value)
