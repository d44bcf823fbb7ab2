"""How a detector family is registered: its :class:`Entry`, the :class:`Context` its
factory builds from, and the :class:`Registry` that checks entries together (see
:mod:`streamwatch.detectors.registry` for the families and the kinds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from streamwatch.config import DetectorSettings

if TYPE_CHECKING:
    from streamwatch.detectors import ModelBinning
    from streamwatch.detectors.performance import LabelledReference
    from streamwatch.windows import WindowBounds

Kind = Literal["window", "outcome", "sequential", "pair"]
KINDS: tuple[Kind, ...] = get_args(Kind)
T = TypeVar("T")


def no_labels(window: WindowBounds) -> LabelledReference | None:
    return None


@dataclass(frozen=True, slots=True)
class Context:
    """What a factory builds a detector from. ``binning``: the model's (window kinds),
    fixed on its first events and shared by all its windows. ``built``: the detectors
    of the same set built before this one, among them what it ``needs``. ``labelled``:
    the performance states of the model's labelled reference (confusion matrix,
    probabilities by actual class), whole and at the phase of a window closing now, or
    None (none yet, or a regressor). ``max_bytes``: what a detector may hold in buffers
    (MAX_BUFFER_BYTES)."""

    settings: DetectorSettings
    binning: ModelBinning | None = None
    built: Mapping[str, object] = field(default_factory=dict)
    labelled: Callable[[WindowBounds], LabelledReference | None] = no_labels
    max_bytes: int = 64 << 20

    def need(self, name: str, kind: type[T]) -> T:
        """The detector ``name`` of the same set, of type ``kind``."""
        detector = self.built.get(name)
        if not isinstance(detector, kind):
            raise TypeError(f"needs the {name} detector ({kind.__name__}) built before it")
        return detector

    def grid(self) -> ModelBinning:
        if self.binning is None:
            raise TypeError("window detectors are built with the model's binning")
        return self.binning


@dataclass(frozen=True, slots=True)
class Sample:
    """Raw values a family keeps beside its aggregates, and the most it keeps (None:
    no bound but what the model sends)."""

    what: str
    most: Callable[[DetectorSettings], int] | None


def _always(settings: DetectorSettings) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Entry:
    """One detector family of one kind.

    ``factory`` builds its state from a :class:`Context`. ``enabled`` says whether the
    settings turn its findings on: window and sequential detectors are built only then
    (and when what they ``need`` is built); outcome states are kept either way (the
    outcome reference pools by performance's count of labels, label-shift estimation
    reads its confusion matrix) and judged only then; the pair detector is kept either
    way (it holds the challengers waiting) and fed only then. ``needs``: detectors of
    the same kind, registered before it, whose state it reads; with ``stateful`` False
    it keeps none of its own (nothing of it is checkpointed). ``compare``: what a
    window is judged against, the reference at the window's phase, the whole reference,
    or nothing. ``subject_per``: one subject per feature or per slice (the report charts
    only those that breached; /metrics the most breached, METRICS__MAX_SUBJECTS).
    ``hint``: the first step an on-call person takes; ``look_at``: where the evidence
    is in the report (``{subjects}`` is replaced). ``sample``: raw values it keeps, if any."""

    name: str
    kind: Kind
    factory: Callable[[Context], Any]
    hint: str
    look_at: str
    enabled: Callable[[DetectorSettings], bool] = _always
    needs: tuple[str, ...] = ()
    stateful: bool = True
    compare: Literal["phase", "whole", "none"] = "phase"
    subject_per: Literal["feature", "slice"] | None = None
    sample: Sample | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"a detector's name is an identifier, not {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"detector {self.name}: kind {self.kind!r} is none of {KINDS}")

    @property
    def merges(self) -> bool:
        return self.kind != "sequential"


class Registry:
    """Entries in the order their detectors are built and judged; checked on creation."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = tuple(entries)
        seen: dict[tuple[str, Kind], Entry] = {}
        named: dict[str, Entry] = {}
        for e in self.entries:
            if (e.name, e.kind) in seen:
                raise ValueError(f"detector {e.name} of kind {e.kind} is registered twice")
            first = named.setdefault(e.name, e)
            if (first.hint, first.look_at, first.subject_per) != (
                e.hint,
                e.look_at,
                e.subject_per,
            ):
                raise ValueError(f"the entries of detector {e.name} say different things of it")
            for need in e.needs:
                if (need, e.kind) not in seen:
                    raise ValueError(
                        f"detector {e.name} needs {need}, of kind {e.kind} and registered before it"
                    )
            seen[(e.name, e.kind)] = e
        if len(self.of_kind("pair")) > 1:
            raise ValueError("the monitor pairs versions through one pair detector")
        self._named = named

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self._named

    def of_kind(self, kind: Kind) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.kind == kind)

    def names(self) -> frozenset[str]:
        return frozenset(self._named)

    def per_subject(self) -> frozenset[str]:
        """Detectors with a subject per feature or slice (the report charts few of them)."""
        return frozenset(n for n, e in self._named.items() if e.subject_per is not None)

    def per_slice(self) -> frozenset[str]:
        """Detectors with a subject per slice (the report's slice table)."""
        return frozenset(n for n, e in self._named.items() if e.subject_per == "slice")

    def hint(self, name: str) -> str | None:
        entry = self._named.get(name)
        return None if entry is None else entry.hint

    def look_at(self, name: str) -> str | None:
        entry = self._named.get(name)
        return None if entry is None else entry.look_at


def build(entries: Iterable[Entry], context: Context, every: bool = False) -> dict[str, Any]:
    """The detectors of ``entries``, by name in their order: those the settings enable
    (all with ``every``) whose needs are built."""
    built: dict[str, Any] = {}
    context = dataclasses.replace(context, built=built)  # each factory sees those before it
    for entry in entries:
        if (every or entry.enabled(context.settings)) and all(n in built for n in entry.needs):
            built[entry.name] = entry.factory(context)
    return built
