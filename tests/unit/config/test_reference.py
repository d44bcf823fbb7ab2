"""The configuration reference and the sinks cookbook against the Settings model.

docs/configuration.md must be what ``render()`` makes of the model today, name every
setting, and every setting must say what it does. Each ```env block of docs/sinks.md
must load and build the sink its section is about.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from streamwatch.config import Settings, load_settings
from streamwatch.errors import ConfigError
from streamwatch.sinks import build_sinks
from tools.config_reference import COMMAND, render

DOCS = Path(__file__).resolve().parents[3] / "docs"
PLACEHOLDER = "<[A-Z_]+>"  # a map's key in a variable name, e.g. <NAME>


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _inside(
    annotation: Any, tag: str | None = None
) -> Iterator[tuple[type[BaseModel], str | None]]:
    """The models an annotation holds (through Optional, Annotated, tuple, dict and
    unions), each with the discriminator that picks it, if any."""
    if _is_model(annotation):
        yield annotation, tag
        return
    args = get_args(annotation)
    for arg in args:
        if isinstance(arg, FieldInfo) and isinstance(arg.discriminator, str):
            tag = arg.discriminator
    for arg in args:
        if not isinstance(arg, FieldInfo):
            yield from _inside(arg, tag)


def _models() -> dict[type[BaseModel], str | None]:
    """Every model reachable from Settings, with its discriminator field, if any."""
    found: dict[type[BaseModel], str | None] = {Settings: None}
    queue: deque[type[BaseModel]] = deque([Settings])
    while queue:
        for field in queue.popleft().model_fields.values():
            for model, tag in _inside(field.annotation):
                if model not in found:
                    found[model] = tag
                    queue.append(model)
    return found


def _variables(model: type[BaseModel], prefix: str = "STREAMWATCH_") -> Iterator[str]:
    """A regex per leaf setting: its variable, a map's key as a placeholder; for the
    items of a JSON list of objects, each key's table row."""
    for name, field in model.model_fields.items():
        variable = prefix + re.escape(name.upper())
        annotation = field.annotation
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _variables(annotation, variable + "__")
        elif origin is dict and (held := [m for m, _ in _inside(get_args(annotation)[1])]):
            for member in held:
                yield from _variables(member, f"{variable}__{PLACEHOLDER}__")
        elif origin is tuple and (held := [m for m, _ in _inside(annotation)]):
            yield variable
            for member in held:
                yield from (re.escape(f"| `{key}` |") for key in member.model_fields)
        else:
            yield variable


def test_the_reference_is_up_to_date() -> None:
    path = DOCS / "configuration.md"
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    if current != render():
        pytest.fail(f"docs/configuration.md is out of date: run `{COMMAND}`", pytrace=False)


def test_the_reference_is_deterministic() -> None:
    assert render() == render()


def test_every_setting_is_in_the_reference() -> None:
    text = render()
    variables = list(_variables(Settings))
    assert len(variables) > 100
    missing = [v for v in variables if re.search(v, text) is None]
    assert not missing, f"not in the reference: {missing}"
    for name in ("STREAMWATCH_WINDOW__SIZE", "STREAMWATCH_SINKS__<NAME>__URL"):
        assert f"`{name}`" in text


def test_every_setting_says_what_it_does() -> None:
    undocumented = []
    for model, tag in _models().items():
        if not (model.__dict__.get("__doc__") or "").strip():
            undocumented.append(f"{model.__name__} (docstring)")
        for name, field in model.model_fields.items():
            if name == tag:
                continue  # the kind itself: its model's docstring says what it is
            where = f"{model.__name__}.{name}"
            if _is_model(field.annotation):
                continue  # a section: its model's docstring (checked above) says it
            description = (field.description or "").strip()
            if not description:
                undocumented.append(where)
            elif get_origin(field.annotation) is dict and " -> " not in description:
                undocumented.append(f"{where} (a map's description starts 'key -> value')")
    assert not undocumented, f"add description= (or a docstring) to: {undocumented}"


def test_the_types_read_from_the_model() -> None:
    text = render()
    rows = {
        "STREAMWATCH_WINDOW__ALLOWED_LATENESS": "| duration | `1m` |",
        "STREAMWATCH_KAFKA__AUTO_OFFSET_RESET": "| one of: earliest, latest | `earliest` |",
        "STREAMWATCH_KAFKA__TOPICS": '| list (JSON) of strings | `["predictions"]` |',
        "STREAMWATCH_KAFKA__SASL_PASSWORD": "| secret | *unset* |",
        "STREAMWATCH_REFERENCE__MIN_EVENTS": "| integer ≥ 1 | `1000` |",
        "STREAMWATCH_DETECTORS__FEATURE_DRIFT__ALPHA": "| number > 0 and < 1 | `0.001` |",
        "STREAMWATCH_SINKS__<NAME>__MIN_SEVERITY": "| one of: warning, critical | `warning` |",
        "STREAMWATCH_SINKS__<NAME>__PATH": "| path | *required* |",
        "STREAMWATCH_ALERTS__DETECTORS__<DETECTOR>__FIRE_AFTER": "| integer ≥ 1 | `1` |",
    }
    for variable, row in rows.items():
        assert f"| `{variable}` {row}" in text
    assert "STREAMWATCH_SINKS__<NAME>__KIND=<kind>" in text
    assert "`STREAMWATCH_DETECTORS__SHADOW__CHAMPIONS` | map (JSON): model id → string" in text


# -- the sinks cookbook --------------------------------------------------------------


def _recipes() -> list[Any]:
    text = (DOCS / "sinks.md").read_text(encoding="utf-8")
    recipes = []
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading = section.splitlines()[0]
        kind = re.search(r"`kind=(\w+)`", heading)
        assert kind is not None, f"sinks.md section {heading!r} names no `kind=...`"
        blocks = re.findall(r"^```env\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
        assert blocks, f"sinks.md section {heading!r} has no ```env block"
        for number, block in enumerate(blocks, start=1):
            slug = re.sub(r"\W+", "-", heading.split("(")[0].strip().lower())
            recipes.append(pytest.param(kind.group(1), block, id=f"{slug}-{number}"))
    return recipes


RECIPES = _recipes()


def test_the_cookbook_covers_the_usual_places() -> None:
    kinds = {recipe.values[0] for recipe in RECIPES}
    assert {"apprise", "retrain", "jira", "github_issue", "kafka"} <= kinds
    text = (DOCS / "sinks.md").read_text(encoding="utf-8")
    for preset in ("github_workflow", "github_repository", "airflow"):
        assert f"PRESET={preset}" in text
    for scheme in ("slack://", "mailtos://", "workflows://"):
        assert scheme in text


@pytest.mark.parametrize(("kind", "block"), RECIPES)
def test_a_recipe_builds_its_sink(kind: str, block: str, tmp_path: Path) -> None:
    env_file = tmp_path / "sink.env"
    env_file.write_text(block, encoding="utf-8")
    settings = load_settings([env_file])
    assert settings.sinks, "the block configures no sink"
    assert {s.kind for s in settings.sinks.values()} == {kind}
    # Building a sink parses its URLs and templates; it sends nothing and connects nowhere.
    routed = build_sinks(settings)
    try:
        assert [r.settings.kind for r in routed] == [kind] * len(settings.sinks)
    finally:
        for r in routed:
            r.sink.close()


def test_a_recipe_needs_its_kind(tmp_path: Path) -> None:
    # The check above would pass vacuously if a block lost its KIND line and fell back
    # to the default sink: it must not.
    env_file = tmp_path / "sink.env"
    env_file.write_text("STREAMWATCH_SINKS__JIRA__PROJECT=MLOPS\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="STREAMWATCH_SINKS__JIRA"):
        load_settings([env_file])
