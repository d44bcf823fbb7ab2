"""The Detector protocol and what detectors report: findings with a severity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, Self

from streamwatch.batch import Batch
from streamwatch.windows import WindowBounds


class Severity(Enum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def of(cls, value: float, warning: float, critical: float) -> Severity:
        if value >= critical:
            return cls.CRITICAL
        if value >= warning:
            return cls.WARNING
        return cls.OK


_RANK = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """What one detector concluded about one subject of one model's window."""

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
