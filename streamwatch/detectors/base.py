"""The Detector protocol and what detectors report: findings with a severity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from streamwatch.batch import Batch
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds


@dataclass(frozen=True, slots=True)
class Finding:
    """What one detector concluded about one subject of one model's window.

    Its numbers are plain Python floats and ints whatever a detector computed them with
    (numpy scalars are coerced here, once), so that every finding can be checkpointed,
    encoded into a notification and logged.
    """

    model: str
    detector: str
    subject: str  # the feature, output, slice or class the finding is about
    statistic: str
    value: float
    threshold: float  # the threshold crossed, or the warning threshold when ok
    severity: Severity
    n_reference: int
    n_current: int
    window: WindowBounds
    explanation: str
    details: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("value", "threshold"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        for name in ("n_reference", "n_current"):
            object.__setattr__(self, name, int(getattr(self, name)))
        details = {str(k): _number(f"details[{k!r}]", v) for k, v in self.details.items()}
        object.__setattr__(self, "details", details)


@dataclass(frozen=True, slots=True)
class Distribution:
    """A column's distribution in the reference and in one window, as shares, for a
    reader to compare: numeric columns on ``edges`` of equal width (``labels`` are the
    bins), categorical ones by category."""

    detector: str
    subject: str
    kind: str  # "numeric" or "categorical"
    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


def _number(name: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"a finding's {name} must be a number, not {value!r}") from None


class Detector(Protocol):
    """Aggregate state of one detector over one model's window (or its reference).

    ``update`` takes columns, never single events; ``merge`` of states built on two
    parts of a stream equals the state built on the whole stream; ``snapshot`` and
    ``restore`` round-trip the state through plain data for checkpoints.
    """

    @property
    def name(self) -> str: ...

    def update(self, batch: Batch) -> None: ...

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]: ...

    def merge(self, other: Self) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: Mapping[str, Any]) -> None: ...
