"""Settings per model: ``STREAMWATCH_MODELS__<MODEL>__...`` over the global ones.

A model's own settings are partial sections (:class:`ModelSettings`): the detectors,
windows, reference, label join and alerts, with every setting optional. What a model
sets is merged over the global section, a map key by key and a nested section setting by
setting, and the merged section is validated whole (:meth:`Partial.over`): only
``DETECTORS__PERFORMANCE__WARNING`` set for a model keeps every other performance
setting global. The partial sections are derived from the full ones (:func:`partial`),
so a setting added to a section can be set per model at once, with its own checks.

Model ids are matched case-insensitively: a variable's name is read lower-cased. An id
that cannot be part of a variable's name (``fraud-v2``) is set in JSON,
``STREAMWATCH_MODELS='{"fraud-v2": {"detectors": {...}}}'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast, get_args

from pydantic import AfterValidator, BaseModel, Field, create_model

from streamwatch.config.alerts import AlertSettings
from streamwatch.config.base import Section
from streamwatch.config.detectors import DetectorSettings, lower_keys
from streamwatch.config.review import ReviewSettings
from streamwatch.config.runtime import LabelSettings, ReferenceSettings, WindowSettings
from streamwatch.config.tables import TableSettings

S = TypeVar("S", bound=BaseModel)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` put over it: maps merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


class Partial(Section):
    """A section of which any setting may be set; what is unset follows the section it
    is put over."""

    def over(self, base: S) -> S:
        """``base`` with the settings set here put over it, validated whole."""
        merged = deep_merge(base.model_dump(), self.model_dump(exclude_unset=True))
        return type(base).model_validate(merged)


def partial(section: type[Section], leave_out: frozenset[str] = frozenset()) -> type[Partial]:
    """The :class:`Partial` of ``section``: each field optional, unset by default, with its
    limits and description; nested sections partial too. ``leave_out`` names settings
    that are global only."""
    fields: dict[str, Any] = {}
    for name, info in section.model_fields.items():
        if name in leave_out:
            continue
        annotation: Any = info.annotation
        description = info.description
        if isinstance(annotation, type) and issubclass(annotation, Section):
            annotation = partial(annotation)
            description = description or f"its own {name.replace('_', ' ')} settings"
        if type(None) not in get_args(annotation):
            annotation = annotation | None
        if info.metadata:  # limits and validators, of the value when it is set
            annotation = Annotated[(annotation, *info.metadata)]
        fields[name] = (annotation, Field(None, description=description))
    derived = create_model(
        f"Partial{section.__name__}", __base__=Partial, __doc__=section.__doc__, **fields
    )
    return cast(type[Partial], derived)


if TYPE_CHECKING:
    PartialDetectors = Partial
    PartialWindow = Partial
    PartialReference = Partial
    PartialLabels = Partial
    PartialAlerts = Partial
    PartialReview = Partial
    PartialTable = Partial
else:
    PartialDetectors = partial(DetectorSettings)
    # Decoding bounds every event before it is known whose it is.
    PartialWindow = partial(WindowSettings, frozenset({"max_future"}))
    PartialReference = partial(ReferenceSettings)
    PartialLabels = partial(LabelSettings)
    # A silence matches the model label already: silences are global.
    PartialAlerts = partial(AlertSettings, frozenset({"silences"}))
    PartialReview = partial(ReviewSettings)
    PartialTable = partial(TableSettings)


class ModelSettings(Section):
    """One model's own settings, any of them: what is unset follows the global ones."""

    detectors: PartialDetectors | None = Field(None, description="as `detectors`")
    window: PartialWindow | None = Field(None, description="as `window`")
    reference: PartialReference | None = Field(None, description="as `reference`")
    labels: PartialLabels | None = Field(None, description="as `labels`")
    alerts: PartialAlerts | None = Field(None, description="as `alerts`")
    review: PartialReview | None = Field(None, description="as `review`")
    table: PartialTable | None = Field(None, description="as `table` (its own reference table)")

    def sections(self) -> dict[str, Partial]:
        """The sections the model sets, by name."""
        return {
            name: value
            for name in type(self).model_fields
            if (value := getattr(self, name)) is not None
        }


ModelMap = Annotated[dict[str, ModelSettings], AfterValidator(lower_keys)]
