"""What a settings field says of itself: its type in words, its limits, its default,
its description (for the configuration reference)."""

from __future__ import annotations

import inspect
import json
import re
import types
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

import annotated_types
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    SecretStr,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo

from streamwatch.config import parse_duration
from streamwatch.observe.redact import SecretUrl

# "model id -> its task": a map's description names its keys first.
_KEY = re.compile(r"^\s*([\w ]+?)\s*->")


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, *m]`` as ``(T, m)``; any other annotation with no metadata."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata.extend(extra)
    return annotation, metadata


def _without_none(annotation: Any) -> Any:
    """``T | None`` as ``T``."""
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_duration(metadata: Iterable[Any]) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in metadata)


def _discriminated(annotation: Any) -> tuple[str, list[type[BaseModel]]] | None:
    """The discriminator and the models of ``Annotated[A | B, Field(discriminator=...)]``."""
    inner, metadata = _unwrap(annotation)
    for item in metadata:
        if isinstance(item, FieldInfo) and isinstance(item.discriminator, str):
            return item.discriminator, [m for m in get_args(inner) if _is_model(m)]
    return None


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _limits(metadata: Iterable[Any]) -> str:
    lower, upper = [], []
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            lower.append(f"> {_number(item.gt)}")
        elif isinstance(item, annotated_types.Ge):
            lower.append(f"≥ {_number(item.ge)}")
        elif isinstance(item, annotated_types.Lt):
            upper.append(f"< {_number(item.lt)}")
        elif isinstance(item, annotated_types.Le):
            upper.append(f"≤ {_number(item.le)}")
    return " and ".join(lower + upper)


def _pattern(metadata: Iterable[Any]) -> str | None:
    for item in metadata:
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    return None


def _non_empty(metadata: Iterable[Any]) -> bool:
    return any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in metadata)


_SCALARS: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    Path: "path",
    SecretStr: "secret",
    SecretUrl: "secret URL",
    AwareDatetime: "time: RFC 3339 with an offset, or epoch seconds",
    datetime: "time: RFC 3339, or epoch seconds",
}
_PLURALS = {
    "string": "strings",
    "secret": "secrets",
    "secret URL": "secret URLs",
    "path": "paths",
    "integer": "integers",
    "number": "numbers",
    "object": "objects",
}


def _enum_values(annotation: type[Enum], metadata: Sequence[Any]) -> list[str]:
    """The values of an enum that the field's own validators accept too."""
    adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, Annotated)[(annotation, *metadata)])
    accepted = []
    for member in annotation:
        try:
            adapter.validate_python(member.value)
        except ValidationError:
            continue
        accepted.append(str(member.value))
    return accepted


def _type(annotation: Any, metadata: Sequence[Any] = (), key: str = "key") -> str:
    """A reader's name for the values a field takes, e.g. ``integer ≥ 1``."""
    annotation, extra = _unwrap(_without_none(annotation))
    metadata = [*metadata, *extra]
    origin = get_origin(annotation)
    if _is_duration(metadata):
        text = "duration"
    elif origin is Literal:
        text = "one of: " + ", ".join(str(a) for a in get_args(annotation))
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        text = "one of: " + ", ".join(_enum_values(annotation, metadata))
    elif origin in (tuple, list):
        item = _type(get_args(annotation)[0])
        text = f"list (JSON) of {_PLURALS.get(item, item)}"
    elif origin is dict:
        value = get_args(annotation)[1]
        text = f"map (JSON): {key} → {_type(value)}"
    elif _is_model(annotation):
        text = "object"
    else:
        text = _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))
    if _non_empty(metadata):
        text = "non-empty " + text
    limits = _limits(metadata)
    if limits:
        text += " " + limits
    pattern = _pattern(metadata)
    if pattern is not None:
        text += f" matching `{pattern}`"
    return text


# -- defaults ------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == 0:
        return "0s"
    if (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:g}s"


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, Path):
        return str(value)
    return value


def _default(field: FieldInfo) -> str:
    """The default as it would be written in an env file."""
    if field.is_required():
        return "*required*"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "*unset*"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and _is_duration(field.metadata):
        text = _duration(value)
    elif isinstance(value, int | float):
        text = _number(value)
    elif isinstance(value, str):
        if not value:
            return '`""` (empty)'
        text = value
    elif isinstance(value, Enum | Path):
        text = str(_jsonable(value))
    else:
        text = json.dumps(_jsonable(value), separators=(",", ":"))
    return f"`{text}`"


# -- text ----------------------------------------------------------------------------


def _doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not a base class's) as one markdown paragraph."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split()).replace("``", "`")


def _sentence(text: str | None, key: str = "") -> str:
    """A description as a sentence; a map's ``key -> value`` as ``<KEY> → value``."""
    text = (text or "").strip()
    if key:
        text = _KEY.sub(f"`{key}` →", text, count=1)
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", ")")) else text + "."


def _key(field: FieldInfo) -> str:
    """What a map's keys are: ``model id`` where it is described as ``model id -> ...``."""
    match = _KEY.match(field.description or "")
    return match.group(1) if match else "key"


def _placeholder(field: FieldInfo) -> str:
    """A map's key in a variable name: ``<MODEL_ID>``, else ``<KEY>``."""
    return "<" + _key(field).upper().replace(" ", "_") + ">"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
