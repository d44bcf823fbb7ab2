"""The root of the tree, :class:`Settings`, with every check that spans sections; how it
is loaded from the environment, and how its errors name their variables."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from streamwatch.config.alerts import AlertSettings
from streamwatch.config.base import ENV_PREFIX, NESTED, Duration
from streamwatch.config.detectors import DetectorSettings
from streamwatch.config.models import ModelMap, Partial
from streamwatch.config.review import ReviewSettings
from streamwatch.config.runtime import (
    HistorySettings,
    KafkaSettings,
    LabelSettings,
    MetricsSettings,
    OutboxSettings,
    ReferenceSettings,
    ReportSettings,
    ServerSettings,
    StateSettings,
    WindowSettings,
)
from streamwatch.config.sinks import LogSinkSettings, add_entry_point_kinds, sink_settings_union
from streamwatch.config.tables import TableSettings
from streamwatch.config.variables import undecodable, unknown_names
from streamwatch.errors import ConfigError

if TYPE_CHECKING:
    # Unresolved at run time until add_sink_kinds() gives Settings.sinks the union of
    # every kind installed; mypy knows the built-in ones.
    from streamwatch.config.sinks import SinkSettings


def _default_sinks() -> dict[str, SinkSettings]:
    return {"log": LogSinkSettings(kind="log")}


class Settings(BaseSettings):
    """Everything streamwatch reads from its environment. At the top level: bounds on what
    producers can make it hold."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        secrets_nested_delimiter=NESTED,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    window: WindowSettings = WindowSettings()
    reference: ReferenceSettings = ReferenceSettings()
    table: TableSettings = TableSettings()
    labels: LabelSettings = LabelSettings()
    detectors: DetectorSettings = DetectorSettings()
    sinks: dict[str, SinkSettings] = Field(
        default_factory=_default_sinks,
        description="name -> a sink, whose kind decides its other settings",
    )
    alerts: AlertSettings = AlertSettings()
    review: ReviewSettings = ReviewSettings()
    outbox: OutboxSettings = OutboxSettings()
    server: ServerSettings = ServerSettings()
    metrics: MetricsSettings = MetricsSettings()
    state: StateSettings = StateSettings()
    history: HistorySettings = HistorySettings()
    report: ReportSettings = ReportSettings()
    max_message_bytes: int = Field(1_048_576, ge=1024, description="larger messages are bad")
    max_models: int = Field(
        1000, ge=1, description="models tracked; events of further models go to dead letters"
    )
    max_columns: int = Field(
        500, ge=1, description="feature columns tracked per model; further names are ignored"
    )
    max_sample_bytes: int = Field(
        4 << 20,
        ge=1024,
        description="bytes of held-back events per model during warm-up (their size in the "
        "checkpoint); at the limit the grid is fitted on the events held so far",
    )
    max_buffer_bytes: int = Field(
        64 << 20,
        ge=1024,
        description="bytes each per-model buffer holds at most (predictions waiting for labels, "
        "labels waiting for predictions, challengers waiting for the champion); the oldest "
        "entries make room",
    )
    watch: list[str] = Field(
        default_factory=list,
        description="model ids watched; events of other ids go to dead letters (empty: any id)",
    )
    models: ModelMap = Field(
        default_factory=dict,
        description="model id -> its own detectors, window, reference, labels and alerts "
        "settings, over the global ones (ids in any case); a JSON list is the ids to watch, "
        "as WATCH",
    )
    model_idle_ttl: Duration = Field(
        7 * 86400.0,
        gt=0,
        description="a model with no event for this long (event time, against the newest event "
        "seen of any model) is let go: its open windows are closed and recorded, its slot freed",
    )

    # Each model's effective settings, made once (see for_model).
    _effective: dict[str, Settings] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _watch_list(cls, data: Any) -> Any:
        """``MODELS=["a","b"]``, the ids to watch before models had settings, is WATCH."""
        if isinstance(data, dict) and isinstance(data.get("models"), list | tuple):
            if data.get("watch"):
                raise ValueError(
                    "STREAMWATCH_MODELS is a list of ids to watch and STREAMWATCH_WATCH is "
                    "set too: list them in WATCH only"
                )
            data = {**data, "watch": data["models"], "models": {}}
        return data

    @model_validator(mode="after")
    def _across_sections(self) -> Settings:
        """The checks that span sections, of these settings and of each model's own (a
        check added here holds for every model's too)."""
        self._changelog_client()
        self._spread_models()
        self._review()
        for model_id in self.models:
            self.for_model(model_id)
        return self

    def _changelog_client(self) -> None:
        if self.state.changelog_topic is not None and self.kafka.client != "kafka-python":
            raise ValueError(
                "STREAMWATCH_STATE__CHANGELOG_TOPIC (scale out) needs KAFKA__CLIENT=kafka-python"
            )

    def _spread_models(self, model_id: str | None = None) -> None:
        """A spread model's partitions must bin alike and close windows alike (with
        ``model_id``: only if that model is spread, with these settings as its own)."""
        spread = self.state.spread_models
        if model_id is not None:
            spread = [m for m in spread if m.lower() == model_id]
        if not spread:
            return
        needs = []
        if self.state.changelog_topic is None:
            needs.append("STREAMWATCH_STATE__CHANGELOG_TOPIC")
        if self.window.mode != "time":
            needs.append("WINDOW__MODE=time")
        if self.reference.path is None:
            needs.append("a pinned reference (REFERENCE__PATH), whose grid every partition shares")
        champions = sorted(set(spread) & set(self.detectors.shadow.champions))
        if champions:
            needs.append(f"no shadow champion (set for {', '.join(champions)})")
        if needs:
            raise ValueError("STREAMWATCH_STATE__SPREAD_MODELS needs " + "; ".join(needs))

    def _review(self, model_id: str | None = None) -> None:
        """Review rules need a sink of kind review, and a model that is not spread (with
        ``model_id``: only if these, its own settings, have rules)."""
        if not self.review.rules:
            return
        if not any(sink.kind == "review" for sink in self.sinks.values()):
            raise ValueError(
                "REVIEW__RULES need a sink of kind review (SINKS__<NAME>__KIND=review, "
                "with a TOPIC or a PATH)"
            )
        spread = {m.lower() for m in self.state.spread_models}
        # Globally: the spread models that follow the global rules (no settings of their own).
        if model_id in spread or (model_id is None and spread - self.models.keys()):
            raise ValueError("human review (REVIEW__RULES) is not for spread models")

    def for_model(self, model_id: str) -> Settings:
        """The settings of one model: its own (``MODELS__<MODEL>__...``, the id in any
        case) merged over the global ones; these settings when it has none."""
        key = model_id.lower()
        own = self.models.get(key)
        if own is None:
            return self
        effective = self._effective.get(key)
        if effective is None:
            effective = self._effective[key] = self._merged(key, own.sections())
        return effective

    def _merged(self, key: str, sections: dict[str, Partial]) -> Settings:
        """The settings of model ``key``: ``sections`` over these, checked as these are."""
        merged: dict[str, Any] = {"models": {}}
        for name, section in sections.items():
            try:
                merged[name] = section.over(getattr(self, name))
            except ValidationError as exc:
                raise ValueError(_named(exc, ("models", key, name))) from None
        effective = self.model_copy(update=merged)
        try:
            effective._changelog_client()
            effective._spread_models(key)
            effective._review(key)
        except ValueError as exc:
            raise ValueError(f"{env_name(('models', key))}: {exc}") from None
        return effective

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, unvalidated as pydantic's; each model's settings are made from it anew."""
        copied = super().model_copy(update=update, deep=deep)
        copied._effective = {}
        return copied

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A secret file is named like its variable (streamwatch_sinks__retrain__secret); the
        # nested source splits the name at "__" into the settings' sections.
        secrets = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, secrets


# pydantic's words for an unknown field, as an env file's unknown variable is reported.
_EXTRA = "Extra inputs are not permitted"


def load_settings(
    env_files: Sequence[Path] = (), secrets_dir: Path | None = None, **overrides: Any
) -> Settings:
    """Build the settings; raise :class:`ConfigError` naming each variable that is wrong,
    and each ``STREAMWATCH_`` variable of the environment that is no setting (as an env
    file's are refused)."""
    for path in env_files:
        if not path.is_file():
            raise ConfigError(f"env file {path} does not exist")
    if secrets_dir is not None and not secrets_dir.is_dir():
        raise ConfigError(f"secrets directory {secrets_dir} does not exist")
    unknown = unknown_names(Settings, os.environ)
    try:
        settings = Settings(
            _env_file=tuple(env_files) or None, _secrets_dir=secrets_dir, **overrides
        )
    except ValidationError as exc:
        lines = _named(exc).split("\n  ")
    except SettingsError as exc:
        lines = [undecodable(exc, _values(env_files, secrets_dir))]
    else:
        lines = _watch_with_overrides(settings, env_files, secrets_dir)
        if not unknown and not lines:
            return settings
    named = {line.partition(": ")[0] for line in lines}  # an env file's unknown ones
    lines += [f"{name}: {_EXTRA}" for name in unknown if name.upper() not in named]
    raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def _named(exc: ValidationError, within: tuple[str, ...] = ()) -> str:
    """Each error of ``exc`` as ``VARIABLE: why``, one a line; ``within`` is where the
    validated settings are in the whole tree. An error of a check across settings says
    which variables it is about."""
    lines = []
    for error in exc.errors():
        loc, message = (*within, *error["loc"]), error["msg"]
        if not loc and error["type"] == "value_error":
            lines.append(message.removeprefix("Value error, "))
        else:
            lines.append(f"{env_name(loc)}: {message}")
    return "\n  ".join(lines)


def _watch_with_overrides(
    settings: Settings, env_files: Sequence[Path], secrets_dir: Path | None
) -> list[str]:
    """A model's own settings beside ``MODELS`` as a list, which they would replace
    unseen (the list is read, the rest dropped)."""
    nested = ENV_PREFIX + "MODELS" + NESTED
    names = [n for n in _values(env_files, secrets_dir) if n.upper().startswith(nested)]
    if settings.models or not names:
        return []
    return [
        f"{name.upper()}: STREAMWATCH_MODELS is a list of ids to watch: "
        "list them in STREAMWATCH_WATCH instead"
        for name in names
    ]


def _values(env_files: Sequence[Path], secrets_dir: Path | None) -> dict[str, str]:
    """Every variable the settings were read from, by name: to find one by its value."""
    found = {name: value or "" for path in env_files for name, value in dotenv_values(path).items()}
    if secrets_dir is not None:
        found |= {
            p.name: p.read_text(errors="replace") for p in secrets_dir.iterdir() if p.is_file()
        }
    return found | dict(os.environ)


def env_name(loc: Sequence[int | str]) -> str:
    """The variable behind a validation error location, e.g. STREAMWATCH_WINDOW__SIZE."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    # Inside the sinks' discriminated union pydantic repeats the kind in the path:
    # ("sinks", "audit", "file", "path") is STREAMWATCH_SINKS__AUDIT__PATH.
    if len(parts) >= 4 and parts[0] == "sinks":
        del parts[2]
    name = NESTED.join(parts).upper()
    # An unknown variable of an env file is reported under its own, prefixed, name.
    return name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON-able data with every secret masked; of each model,
    the settings it sets itself."""
    return settings.model_dump(mode="json") | {
        "models": {
            model_id: own.model_dump(mode="json", exclude_unset=True)
            for model_id, own in settings.models.items()
        }
    }


def add_sink_kinds() -> None:
    """Complete :class:`Settings` with every sink kind: the built-in ones and those of the
    installed ``streamwatch.sinks`` entry points. ``streamwatch.config`` runs it once, when
    all its names are bound, so that a third-party kind's module may import them."""
    add_entry_point_kinds()
    Settings.model_rebuild(_types_namespace={"SinkSettings": sink_settings_union()})
