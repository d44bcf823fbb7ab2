"""What detectors report (findings with a severity) and the protocol of each kind.

A detector family has one of four kinds (see :mod:`streamwatch.detectors.registry`),
each with its protocol here: :class:`Detector` for ``window`` (a batch of one window's
events), :class:`OutcomeDetector` for ``outcome`` (one window's joined labels),
:class:`SequentialDetector` for ``sequential`` (every joined label in arrival order; it
has no merge, as order is what it reads), :class:`PairDetector` for ``pair`` (champion and
challenger predictions of one event).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from streamwatch.batch import Batch
from streamwatch.join import Joined
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

Confusion = Mapping[tuple[str, str], int]  # (predicted class, actual class) -> count


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


@dataclass(frozen=True, slots=True)
class LabelledBatch:
    """Joined labels, what outcome and sequential detectors are updated with: of one
    window for an outcome detector, in arrival order over windows for a sequential one.

    ``dimensions`` name the slice values of ``joined.slices`` (in that order; a stored
    tuple may be shorter, from before a dimension was seen); ``vocabulary`` holds the
    values of each dimension tracked so far by the model (detectors may add to it)."""

    joined: Joined
    regression: bool
    dimensions: Sequence[str] = ()
    vocabulary: dict[str, set[str]] = field(default_factory=dict)


class Detector(Protocol):
    """A ``window`` detector: aggregate state over one model's window (or its reference).

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


class OutcomeDetector(Protocol):
    """An ``outcome`` detector: aggregate state over one window's joined labels (or the
    outcome reference's), compared with the reference when the window's labels are due.
    Merges and round-trips like a window detector."""

    @property
    def name(self) -> str: ...

    def observe(self, labels: LabelledBatch) -> None: ...

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]: ...

    def merge(self, other: Self) -> None: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


class Derived:
    """A window or outcome detector with no state of its own: it reads the state of the
    detectors it ``needs`` (registry.py), which update, merge, snapshot and restore it."""

    def update(self, batch: Batch) -> None:
        """Nothing: what it reads is updated by its own detector."""

    def observe(self, labels: LabelledBatch) -> None:
        """Nothing: what it reads is updated by its own detector."""

    def merge(self, other: Self) -> None:
        """Nothing: what it reads is merged by its own detector."""

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: Any) -> None:
        """Nothing: what it reads is restored by its own detector."""


class SequentialDetector(Protocol):
    """A ``sequential`` detector: one per model, fed every joined label in arrival
    order; it remembers what it found per window until the window is evaluated. The
    order is what it reads, so it has no merge."""

    @property
    def name(self) -> str: ...

    def observe(self, labels: LabelledBatch) -> None: ...

    def evaluate(self, model: str, window: WindowBounds) -> list[Finding]: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


class PairDetector(Protocol):
    """A ``pair`` detector: champion and challenger predictions of the same events,
    counted in the champion's window. A challenger that comes before its champion waits
    in it (``wait``) until the monitor takes it (``take``) to ``pair``. Judged on its
    own, with no reference."""

    @property
    def name(self) -> str: ...

    @property
    def waiting(self) -> Mapping[str, tuple[str, object, float]]: ...

    def pair(
        self,
        window: int,
        version: str,
        champion: tuple[object, float],
        challenger: tuple[object, float],
    ) -> None: ...

    def wait(self, event_id: str, version: str, prediction: object, score: float) -> None: ...

    def take(self, event_id: str) -> tuple[str, object, float]: ...

    def evaluate(self, model: str, window: WindowBounds) -> list[Finding]: ...

    def merge(self, other: Self) -> None: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...
