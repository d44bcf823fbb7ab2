"""The configuration reference, ``docs/configuration.md``, generated from :class:`Settings`.

Every variable, its type, default and description is read from the model: the field
names give the variable, the annotations and their constraints (``Gt``, ``Ge``, ...,
``Literal`` arguments, enum values a validator accepts) the type, the defaults the
default, and ``description=`` (or a section's docstring) the text. Nothing here lists
the settings, so a new one appears in the reference as soon as it is in the model.

``python -m tools.config_reference``, run from the repository root, rewrites the file;
``--check`` only says whether it is up to date (exit 1 if not), ``--stdout`` prints it
instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args, get_origin

from pydantic import (
    BaseModel,
)
from pydantic.fields import FieldInfo

from streamwatch.config import ENV_PREFIX, NESTED, Settings
from tools.config_reference.fields import (
    _cell,
    _default,
    _discriminated,
    _doc,
    _is_model,
    _jsonable,
    _key,
    _placeholder,
    _sentence,
    _type,
    _unwrap,
    _without_none,
)

OUTPUT = Path("docs/configuration.md")
COMMAND = "python -m tools.config_reference"

_GENERATED_FROM = "streamwatch/config/ by `python -m tools.config_reference`"


_INTRO = f"""\
# Configuration reference

<!-- Generated from {_GENERATED_FROM}: do not edit by hand. -->

Every setting is an environment variable: `{ENV_PREFIX}` and the setting's path joined
by `{NESTED}`, e.g. `{ENV_PREFIX}WINDOW{NESTED}SIZE=5m`. Variables are read from the
environment, from `--env-file` files (later files win, the environment beats them) and
from files in `--secrets-dir`, each named like its variable (e.g.
`streamwatch_sinks__retrain__token`). Names are case-insensitive.
`streamwatch check-config` prints the effective settings with secrets masked, or names
the variable that is wrong.

Values:

- **duration**: a number and a unit, `ms`, `s`, `m`, `h` or `d` (`90s`, `5m`, `1h`,
  `2d`); a bare number is seconds.
- **list (JSON)**: a JSON array, e.g. `["predictions","labels"]`.
- **map (JSON)**: a JSON object, e.g. `{{"fraud":"3"}}`. One entry may also be set on
  its own as `...{NESTED}<KEY>=value`, but the key is then lower-cased: use JSON where a
  key has capitals (model ids, label names, header names).
- **secret**: never printed or logged; best kept in `--secrets-dir` files.
- **secret URL**: used as given, printed and logged masked: its user and password, its
  query values and (for an incoming webhook: Slack, Discord, Teams, `/hooks/...`) its
  path; an apprise URL but for its scheme.
- *unset* means no value (the setting is off, or the text says what applies instead).
"""


@dataclass(frozen=True, slots=True)
class _Row:
    name: str
    type: str
    default: str
    description: str


# -- types ---------------------------------------------------------------------------


def _table(rows: Sequence[_Row], first: str = "Variable") -> list[str]:
    lines = [f"| {first} | Type | Default | Description |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{_cell(r.name)}` | {_cell(r.type)} | {_cell(r.default)} | {_cell(r.description)} |"
        for r in rows
    ]
    return [*lines, ""]


def _heading(level: int, title: str) -> list[str]:
    return ["#" * min(level, 6) + " " + title, ""]


def _paragraph(*parts: str) -> list[str]:
    text = " ".join(p for p in parts if p)
    return [text, ""] if text else []


# -- the walk ------------------------------------------------------------------------


def _row(name: str, field: FieldInfo) -> _Row:
    return _Row(
        name=name,
        type=_type(field.annotation, field.metadata, _key(field)),
        default=_default(field),
        description=field.description or "",
    )


def _item_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a list of models (``tuple[Silence, ...]``), whose items are JSON."""
    annotation = _without_none(field.annotation)
    if get_origin(annotation) in (tuple, list):
        item = _unwrap(get_args(annotation)[0])[0]
        if _is_model(item):
            return cast(type[BaseModel], item)
    return None


def _value_annotation(field: FieldInfo) -> Any | None:
    annotation = _without_none(field.annotation)
    if get_origin(annotation) is dict:
        return get_args(annotation)[1]
    return None


def _section(
    model: type[BaseModel], prefix: str, path: str, level: int, text: Sequence[str]
) -> list[str]:
    """A model's variables: a table of its own, then one subsection per nested model."""
    rows: list[_Row] = []
    later: list[list[str]] = []
    for name, field in model.model_fields.items():
        variable = prefix + name.upper()
        dotted = f"{path}.{name}" if path else name
        annotation = _without_none(field.annotation)
        value = _value_annotation(field)
        if _is_model(annotation):
            own = _doc(annotation)
            later.append(
                _section(
                    annotation,
                    variable + NESTED,
                    dotted,
                    level + 1,
                    [_sentence(field.description), own],
                )
            )
        elif value is not None and _discriminated(value) is not None:
            later.append(_union_map(variable, dotted, field, level + 1))
        elif value is not None and _is_model(_unwrap(value)[0]):
            later.append(_model_map(variable, dotted, field, _unwrap(value)[0], level + 1))
        elif (item := _item_model(field)) is not None:
            row = _row(variable, field)
            listed = f"{row.type} (`{dotted}` below)"
            rows.append(_Row(row.name, listed, row.default, row.description))
            later.append(_model_list(variable, dotted, item, level + 1))
        else:
            rows.append(_row(variable, field))
    # The root's own variables sit under a heading of the level of its sections.
    lines = _heading(level, f"`{path}`") if path else _heading(level + 1, "Top level")
    lines += _paragraph(*text)
    if rows:
        lines += _table(rows)
    for part in later:
        lines += part
    return lines


def _model_map(
    variable: str, path: str, field: FieldInfo, model: type[BaseModel], level: int
) -> list[str]:
    """``dict[str, Model]``: one set of variables per key."""
    key = _placeholder(field)
    example = "{" + f'"{key[1:-1].lower()}": {{...}}' + "}"
    how = (
        f"Per key as `{variable}{NESTED}{key}{NESTED}...`, or the whole map as JSON, "
        f"`{variable}={example}`. Default: `{_default(field).strip('`')}`."
    )
    text = [_sentence(field.description, key), _doc(model), how]
    return _section(model, variable + NESTED + key + NESTED, path, level, text)


def _model_list(variable: str, path: str, model: type[BaseModel], level: int) -> list[str]:
    """``tuple[Model, ...]``: a JSON list of objects, one key per field."""
    rows = [_row(name, field) for name, field in model.model_fields.items()]
    lines = _heading(level, f"`{path}`")
    lines += _paragraph(_doc(model), f"`{variable}` is a JSON list of objects with these keys:")
    return lines + _table(rows, first="Key")


def _fingerprint(field: FieldInfo) -> str:
    return repr((field.annotation, field.metadata, field.description, _default(field)))


def _union_map(variable: str, path: str, field: FieldInfo, level: int) -> list[str]:
    """``dict[str, A | B | ...]`` chosen by a discriminator: one table per kind."""
    value = _value_annotation(field)
    found = _discriminated(value)
    assert found is not None
    discriminator, members = found
    key = _placeholder(field)
    prefix = variable + NESTED + key + NESTED
    kinds = {m: str(get_args(m.model_fields[discriminator].annotation)[0]) for m in members}

    # Settings every kind has, as most kinds have them; a kind that differs says so.
    shared = [
        name
        for name in members[0].model_fields
        if name != discriminator and all(name in m.model_fields for m in members)
    ]
    usual: dict[str, FieldInfo] = {}
    for name in shared:
        infos = [m.model_fields[name] for m in members]
        prints = [_fingerprint(i) for i in infos]
        usual[name] = max(infos, key=lambda i: prints.count(_fingerprint(i)))

    selector = f"{prefix}{discriminator.upper()}=<{discriminator}>"
    default = json.dumps(
        _jsonable(field.get_default(call_default_factory=True)), separators=(",", ":")
    )
    lines = _heading(level, f"`{path}`")
    lines += _paragraph(_sentence(field.description, key), "Its kind is set with")
    lines += ["```env", selector, "```", ""]
    lines += _paragraph(
        f"with `<{discriminator}>` one of "
        + ", ".join(f"`{k}`" for k in kinds.values())
        + f". `{key}` is any name (read lower-cased). "
        f"Default: `{default}`; setting any entry replaces the whole default."
    )
    lines += _heading(level + 1, "Every kind")
    lines += _table([_row(prefix + name.upper(), info) for name, info in usual.items()])
    for member, kind in kinds.items():
        rows = [
            _row(prefix + name.upper(), info)
            for name, info in member.model_fields.items()
            if name != discriminator
            and (name not in usual or _fingerprint(info) != _fingerprint(usual[name]))
        ]
        selected = f"`{prefix}{discriminator.upper()}={kind}`"
        lines += _heading(level + 1, f"`{discriminator}={kind}`")
        if rows:
            lines += _paragraph(_doc(member), f"{selected} takes, besides those of every kind:")
            lines += _table(rows)
        else:
            lines += _paragraph(_doc(member), f"{selected} takes only those of every kind.")
    return lines


def render() -> str:
    """The whole reference as markdown; the same text for the same model, always."""
    lines = _section(Settings, ENV_PREFIX, "", 1, [_doc(Settings)])
    text = _INTRO + "\n" + "\n".join(lines)
    return text.rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or print, or check) the reference; 0 when done or up to date, 1 when not."""
    parser = argparse.ArgumentParser(prog=COMMAND.removeprefix("python -m "), description=__doc__)
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdout", action="store_true", help="print instead of writing")
    mode.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
    if args.check:
        if current != text:
            print(f"{args.output} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
