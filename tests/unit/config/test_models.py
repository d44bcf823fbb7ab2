"""Settings per model (config/models.py, ``Settings.for_model``) and per feature
(``COLUMNS`` of drift and data quality), read from real variables and env files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamwatch.cli import main
from streamwatch.config import DataQualitySettings, DriftSettings, Settings, load_settings
from streamwatch.errors import ConfigError

PREFIX = "STREAMWATCH_MODELS__FRAUD__"


def test_a_models_variables_are_merged_over_the_global_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMWATCH_DETECTORS__PERFORMANCE__CRITICAL", "0.3")
    monkeypatch.setenv("STREAMWATCH_ALERTS__LABELS__ENV", "prod")
    monkeypatch.setenv(PREFIX + "DETECTORS__PERFORMANCE__WARNING", "0.01")
    monkeypatch.setenv(PREFIX + "DETECTORS__SLICES__FEATURES", '["region","channel"]')
    monkeypatch.setenv(PREFIX + "ALERTS__LABELS__TEAM", "risk")
    monkeypatch.setenv(PREFIX + "ALERTS__REDACT", '["income"]')
    monkeypatch.setenv(PREFIX + "LABELS__HORIZON", "30m")
    monkeypatch.setenv(PREFIX + "WINDOW__SIZE", "10m")
    settings = load_settings()
    fraud = settings.for_model("fraud")
    performance = fraud.detectors.performance
    # Only what the model sets is its own: the rest of each section stays global.
    assert (performance.warning, performance.critical, performance.alpha) == (0.01, 0.3, 0.001)
    assert fraud.detectors.slices.features == ("region", "channel")
    assert fraud.alerts.labels == {"env": "prod", "team": "risk"}
    assert fraud.alerts.redact == ("income",)
    assert fraud.labels.horizon == 1800.0
    assert (fraud.window.seconds, settings.window.seconds) == (600.0, 300.0)
    assert fraud.kafka is settings.kafka
    assert fraud.sinks is settings.sinks
    # The global settings are unchanged, and a model without settings of its own has them.
    assert settings.detectors.performance.warning == 0.05
    assert settings.detectors.slices.features == ()
    assert settings.for_model("churn") is settings


def test_model_ids_match_in_any_case_and_each_models_settings_are_made_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PREFIX + "DETECTORS__DATA_QUALITY__WARNING", "0.05")
    settings = load_settings()
    fraud = settings.for_model("Fraud")
    assert fraud is settings.for_model("FRAUD") is settings.for_model("fraud")
    assert fraud.detectors.data_quality.warning == 0.05
    assert fraud.for_model("fraud") is fraud  # effective settings have no models of their own


def test_an_id_that_cannot_be_a_variable_name_is_set_in_json(tmp_path: Path) -> None:
    env_file = tmp_path / "models.env"
    env_file.write_text(
        'STREAMWATCH_MODELS={"Fraud-V2": {"detectors": {"feature_drift": '
        '{"numeric_statistic": "psi", "columns": {"User_ID": {"ignore": true}}}}}}\n'
        "STREAMWATCH_MODELS__CHURN__REFERENCE__MIN_EVENTS=50\n"
    )
    settings = load_settings([env_file])
    assert sorted(settings.models) == ["churn", "fraud-v2"]
    drift = settings.for_model("fraud-v2").detectors.feature_drift
    assert drift.numeric_statistic == "psi"
    assert drift.column("user_id").ignore
    assert drift.column("USER_ID").ignore
    assert settings.for_model("churn").reference.min_events == 50
    assert settings.watch == []  # settings of a model do not make an allow-list


def test_models_as_a_list_is_still_the_ids_watched(tmp_path: Path) -> None:
    env_file = tmp_path / "old.env"
    env_file.write_text('STREAMWATCH_MODELS=["fraud","Churn"]\n')
    settings = load_settings([env_file])
    assert (settings.watch, settings.models) == (["fraud", "Churn"], {})
    assert Settings(models=["a"]).watch == ["a"]


def test_the_list_form_beside_a_models_own_settings_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMWATCH_MODELS", '["fraud"]')
    monkeypatch.setenv(PREFIX + "WINDOW__SIZE", "1m")
    with pytest.raises(ConfigError, match=PREFIX + "WINDOW__SIZE: .*STREAMWATCH_WATCH"):
        load_settings()
    monkeypatch.delenv(PREFIX + "WINDOW__SIZE")
    monkeypatch.setenv("STREAMWATCH_WATCH", '["churn"]')
    with pytest.raises(ConfigError, match="list them in WATCH only"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        (
            "DETECTORS__PERFORMANCE__WARNING",
            "-1",
            PREFIX + "DETECTORS__PERFORMANCE__WARNING: Input should be greater than 0",
        ),
        (
            "DETECTORS__PERFORMANCE__WARNINGS",
            "0.1",
            PREFIX + "DETECTORS__PERFORMANCE__WARNINGS: Extra inputs are not permitted",
        ),
        (
            "DETECTORS__FEATURE_DRIFT__NUMERIC_WARNING",
            "0.5",
            PREFIX + "DETECTORS__FEATURE_DRIFT: Value error, numeric_critical (0.25) is below "
            "numeric_warning (0.5)",
        ),
        (
            "WINDOW__MODE",
            "count",
            PREFIX + "WINDOW__SIZE: Value error, '5m' is not a positive event count",
        ),
        ("WINDOW__MAX_FUTURE", "1h", PREFIX + "WINDOW__MAX_FUTURE: Extra inputs"),
        ("ALERTS__SILENCES", "[]", PREFIX + "ALERTS__SILENCES: Extra inputs"),
        (
            "DETECTORS__FEATURE_DRIFT__COLUMNS__ID__STATISTIC",
            "median",
            PREFIX + "DETECTORS__FEATURE_DRIFT__COLUMNS__ID__STATISTIC: Input should be",
        ),
        (
            "DETECTORS__DATA_QUALITY__COLUMNS__ID__WARNING",
            "0.5",
            PREFIX + "DETECTORS__DATA_QUALITY: Value error, columns.id: critical (0.2) is below "
            "warning (0.5)",
        ),
    ],
)
def test_a_models_wrong_setting_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, error: str
) -> None:
    monkeypatch.setenv(PREFIX + name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"\n  {error}" in str(caught.value)


def test_checks_across_sections_hold_for_each_models_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STREAMWATCH_STATE__SPREAD_MODELS", '["busy"]')
    monkeypatch.setenv("STREAMWATCH_STATE__CHANGELOG_TOPIC", "changelog")
    monkeypatch.setenv("STREAMWATCH_REFERENCE__PATH", str(tmp_path / "reference.jsonl"))
    # A model not spread may count its windows; a spread one must not.
    monkeypatch.setenv("STREAMWATCH_MODELS__QUIET__WINDOW__MODE", "count")
    monkeypatch.setenv("STREAMWATCH_MODELS__QUIET__WINDOW__SIZE", "500")
    assert load_settings().for_model("quiet").window.events == 500
    monkeypatch.setenv("STREAMWATCH_MODELS__BUSY__WINDOW__MODE", "count")
    monkeypatch.setenv("STREAMWATCH_MODELS__BUSY__WINDOW__SIZE", "500")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).endswith(
        "\n  STREAMWATCH_MODELS__BUSY: STREAMWATCH_STATE__SPREAD_MODELS needs WINDOW__MODE=time"
    )


def test_check_config_shows_each_models_own_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "models.env"
    env_file.write_text(
        PREFIX
        + "DETECTORS__PERFORMANCE__WARNING=0.01\n"
        + PREFIX
        + "DETECTORS__FEATURE_DRIFT__COLUMNS__USER_ID__IGNORE=true\n"
        'STREAMWATCH_WATCH=["fraud"]\n'
    )
    assert main(["check-config", "--env-file", str(env_file)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["watch"] == ["fraud"]
    assert shown["models"] == {
        "fraud": {
            "detectors": {
                "performance": {"warning": 0.01},
                "feature_drift": {"columns": {"user_id": {"ignore": True}}},
            }
        }
    }


def test_a_copy_makes_each_models_settings_from_its_own() -> None:
    settings = Settings(models={"fraud": {"reference": {"min_events": 10}}})
    assert settings.for_model("fraud").reference.season == 0.0
    season = settings.reference.model_copy(update={"season": 86400.0})
    copied = settings.model_copy(update={"reference": season})
    assert copied.for_model("fraud").reference.season == 86400.0
    assert copied.for_model("fraud").reference.min_events == 10


# -- per feature ---------------------------------------------------------------------


def test_a_columns_statistic_brings_its_own_thresholds_unless_set() -> None:
    drift = DriftSettings(
        numeric_warning=0.15,
        columns={
            "Amount": {"statistic": "psi"},
            "age": {"warning": 0.05},
            "country": {"statistic": "ks", "critical": 0.5},
        },
    )
    assert drift.statistic("numeric", "AMOUNT") == "psi"
    assert drift.thresholds("numeric", "amount") == (0.1, 0.25)  # psi's own
    assert drift.thresholds("numeric", "age") == (0.05, 0.25)  # the detector's critical
    assert drift.thresholds("numeric", "other") == (0.15, 0.25)
    # KS has no categorical form: a categorical column keeps the detector's statistic.
    assert drift.statistic("categorical", "country") == "total_variation"
    assert drift.thresholds("categorical", "country") == (0.05, 0.5)
    assert drift.statistic("numeric", "country") == "ks"


def test_column_names_differing_only_in_case_are_refused() -> None:
    with pytest.raises(ValueError, match="keys differ only in case: Amount, amount"):
        DataQualitySettings(columns={"amount": {}, "Amount": {}})


def test_a_feature_set_globally_and_for_a_model_merges_setting_by_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMWATCH_DETECTORS__FEATURE_DRIFT__COLUMNS__AMOUNT__STATISTIC", "psi")
    monkeypatch.setenv(PREFIX + "DETECTORS__FEATURE_DRIFT__COLUMNS__AMOUNT__WARNING", "0.05")
    monkeypatch.setenv(PREFIX + "DETECTORS__DATA_QUALITY__COLUMNS__USER_ID__IGNORE", "true")
    settings = load_settings()
    own = settings.for_model("fraud").detectors
    assert own.feature_drift.column("amount").statistic == "psi"
    assert own.feature_drift.thresholds("numeric", "amount") == (0.05, 0.25)
    assert settings.detectors.feature_drift.thresholds("numeric", "amount") == (0.1, 0.25)
    assert own.data_quality.column("user_id").ignore
    assert not settings.detectors.data_quality.column("user_id").ignore
