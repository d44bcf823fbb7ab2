"""Variables as settings: which ``STREAMWATCH_`` names are no setting at all, and which
variable holds a value that is not the JSON its setting takes.

pydantic-settings reads from the process environment only the variables of the known
sections, and the nested ones of sections with fields: ``STREAMWATCH_WINDOWS__SIZE`` or
``STREAMWATCH_MAX_MODELS__X`` would be ignored where an env file's are refused.
:func:`unknown_names` walks each name down the settings' fields instead. And where a value
that should be JSON is not, pydantic-settings names only its section (``kafka``):
:func:`undecodable` finds the variable.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_settings import SettingsError

from streamwatch.config.base import ENV_PREFIX, NESTED

# What Kubernetes sets in every pod for a Service named "streamwatch" in its namespace
# (enableServiceLinks, on by default): no setting, and never a misspelt one.
_SERVICE_LINK = re.compile(
    r"STREAMWATCH_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)",
    re.IGNORECASE,
)
# How pydantic-settings names the section of a value it could not decode.
_SECTION = re.compile(r'field "(\w+)"')


def unknown_names(root: type[BaseModel], names: Iterable[str]) -> list[str]:
    """Those of ``names`` that begin with ``STREAMWATCH_`` (in any case, as settings are
    read) but name no setting of ``root``.

    >>> from streamwatch.config import Settings
    >>> unknown_names(Settings, ["STREAMWATCH_WINDOWS__SIZE", "streamwatch_window__size"])
    ['STREAMWATCH_WINDOWS__SIZE']
    >>> unknown_names(Settings, ["STREAMWATCH_SINKS__OPS__HEADERS__X_TOKEN", "HOME"])
    []
    >>> unknown_names(Settings, ["STREAMWATCH_PORT_9108_TCP_ADDR", "STREAMWATCH_SERVICE_HOST"])
    []
    """
    return [
        name
        for name in names
        if name.upper().startswith(ENV_PREFIX)
        and not _SERVICE_LINK.fullmatch(name)
        and not _leads_somewhere(root, name[len(ENV_PREFIX) :].lower().split(NESTED))
    ]


def _leads_somewhere(annotation: Any, parts: list[str]) -> bool:
    """Whether ``parts`` is a path into ``annotation``: a field of a model, any key of a
    dict (a sink's name), a field of any member of a union (a sink of any kind, whose
    own fields the sink's settings check against its kind). A whole section or
    collection may be one variable, in JSON."""
    if not parts:
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leads_somewhere(get_args(annotation)[0], parts)
    if origin in (Union, types.UnionType):
        return any(_leads_somewhere(member, parts) for member in get_args(annotation))
    if origin is dict:
        return _leads_somewhere(get_args(annotation)[1], parts[1:])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(parts[0])
        return field is not None and _leads_somewhere(field.annotation, parts[1:])
    return False  # a leaf (a number, a string, a list) with more parts after it


def undecodable(error: SettingsError, values: Mapping[str, str]) -> str:
    """``VARIABLE: why`` for a value that is not the JSON its setting takes. ``values``
    are every variable read (the environment's, the env files', the secret files'), by
    name: the variable is the one of the section holding the value that failed. Never
    the value itself, which may be a secret."""
    cause, section = error.__cause__, _SECTION.search(str(error))
    if not isinstance(cause, json.JSONDecodeError) or section is None:
        return str(error)
    variable = ENV_PREFIX + section.group(1).upper()
    names = [
        name.upper()
        for name, value in values.items()
        if value.strip() == cause.doc.strip()
        and (name.upper() == variable or name.upper().startswith(variable + NESTED))
    ]
    return (
        f"{', '.join(dict.fromkeys(names)) or variable}: not valid JSON ({cause}); "
        'lists and mappings are written in JSON, e.g. ["a", "b"] or {"team": "risk"}'
    )
