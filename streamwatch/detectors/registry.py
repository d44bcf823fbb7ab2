"""Every detector family: its kind, how it is built, and what is said about it.

An :class:`Entry` registers a family by its name (the ``detector`` of its findings) and
its kind, which says what it is updated with and where it lives:

- ``window``: a batch of one window's events (:class:`~streamwatch.detectors.base.Detector`),
  in each window's :class:`~streamwatch.detectors.DetectorSet`; merges;
- ``outcome``: one window's joined labels (:class:`~streamwatch.detectors.base.OutcomeDetector`),
  in each labelled window of :mod:`streamwatch.pipeline.outcomes`; merges;
- ``sequential``: every joined label in arrival order
  (:class:`~streamwatch.detectors.base.SequentialDetector`), one per model; order is
  what it reads, so it does not merge;
- ``pair``: champion and challenger predictions of the same events
  (:class:`~streamwatch.detectors.base.PairDetector`), one per model; merges.

A family may have an entry of two kinds: concept drift is judged on each window's labels
by default and by a river detector on the stream of errors when configured; label shift
is observed from labels and estimated from predictions. Entries of one name agree on
what is said of the name (hint, where to look, subjects). Third parties add entries
through the ``streamwatch.detectors`` entry-point group, each entry point naming an
:class:`Entry`, e.g. in a ``pyproject.toml``::

    [project.entry-points."streamwatch.detectors"]
    null_scores = "streamwatch_nulls:ENTRY"

They are read once per process, after the built-in ones; a name that clashes with a
built-in one is a :class:`~streamwatch.errors.ConfigError` naming the entry point. Their
kind is window, outcome or sequential (the monitor pairs versions through shadow), and
their state is checkpointed under their name.

>>> from streamwatch.config import DetectorSettings
>>> [e.name for e in BUILT_IN.of_kind("window") if e.enabled(DetectorSettings())][-3:]
['out_of_distribution', 'data_quality', 'estimated_performance']
>>> sorted(BUILT_IN.per_subject())
['data_quality', 'fairness', 'feature_drift', 'slice_performance']
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from streamwatch import plugins
from streamwatch.config import DetectorSettings
from streamwatch.detectors import river_state
from streamwatch.detectors.base import Detector, OutcomeDetector, PairDetector, SequentialDetector
from streamwatch.detectors.concept import Residuals, Sequential
from streamwatch.detectors.coverage import LabelCoverage
from streamwatch.detectors.drift import FeatureDrift, PredictionDrift
from streamwatch.detectors.entry import KINDS, Context, Entry, Kind, Registry, Sample, build
from streamwatch.detectors.estimated import EstimatedPerformance
from streamwatch.detectors.fairness import Fairness
from streamwatch.detectors.label_shift import EstimatedLabelShift, ObservedLabelShift
from streamwatch.detectors.ood import OutOfDistribution
from streamwatch.detectors.operational import Operational
from streamwatch.detectors.performance import Performance
from streamwatch.detectors.quality import DataQuality
from streamwatch.detectors.shadow import Shadow
from streamwatch.detectors.slices import Slices
from streamwatch.errors import ConfigError

ENTRY_POINT_GROUP = "streamwatch.detectors"


# The factories of each kind, typed: mypy checks each family against its kind's protocol.
def _window(factory: Callable[[Context], Detector]) -> Callable[[Context], Any]:
    return factory


def _outcome(factory: Callable[[Context], OutcomeDetector]) -> Callable[[Context], Any]:
    return factory


def _sequential(factory: Callable[[Context], SequentialDetector]) -> Callable[[Context], Any]:
    return factory


def _pair(factory: Callable[[Context], PairDetector]) -> Callable[[Context], Any]:
    return factory


def _adwin_singles(s: DetectorSettings) -> int:
    """ADWIN's smallest buckets hold one error each, up to ``max_buckets`` + 1."""
    if s.concept_drift.detector != "adwin":
        return 0
    return int(river_state.KINDS["adwin"]().max_buckets) + 1


def _concept_windowed(s: DetectorSettings) -> bool:
    return s.concept_drift.enabled and s.concept_drift.detector == "reference"


def _concept_river(s: DetectorSettings) -> bool:
    return s.concept_drift.enabled and s.concept_drift.detector != "reference"


_CATEGORIES = "category names, up to {} per column (the rest counted as __other__)"
_CLASSES = Sample("class names, predicted and actual (as many as the model's classes)", None)
_LABEL_SHIFT = (
    "the class mix moved: recalibrate thresholds or retrain on recent data",
    "the estimated class priors and their intervals",
)
_CONCEPT = (
    "the error rate changed within the stream: review recent labels and consider retraining",
    "the error rate over time, with label coverage",
)

BUILT_IN = Registry(
    [
        Entry(
            "feature_drift",
            "window",
            _window(lambda c: FeatureDrift(c.settings.feature_drift, c.grid().features)),
            "check the upstream data for the drifted features; retrain if the new "
            "distribution is the new normal",
            "the reference and current distributions of {subjects}",
            enabled=lambda s: s.feature_drift.enabled,
            subject_per="feature",
            sample=Sample(
                _CATEGORIES.format("FEATURE_DRIFT__MAX_CATEGORIES"),
                lambda s: s.feature_drift.max_categories,
            ),
        ),
        Entry(
            "prediction_drift",
            "window",
            _window(lambda c: PredictionDrift(c.settings.prediction_drift, c.grid().outputs)),
            "compare the model's inputs for the same period; check recent deployments of the model",
            "the reference and current distributions of the output {subjects}",
            enabled=lambda s: s.prediction_drift.enabled,
            sample=Sample(
                _CATEGORIES.format("PREDICTION_DRIFT__MAX_CATEGORIES"),
                lambda s: s.prediction_drift.max_categories,
            ),
        ),
        Entry(
            "operational",
            "window",
            _window(lambda c: Operational(c.settings.operational)),
            "check the model server's latency, errors and traffic",
            "{subjects} over time",
            enabled=lambda s: s.operational.enabled,
        ),
        Entry(
            "out_of_distribution",
            "window",
            _window(lambda c: OutOfDistribution(c.settings.out_of_distribution, c.grid().inputs)),
            "look at a sample of the window's events: the inputs are unlike the reference "
            "taken together",
            "the inputs' distance from the reference over time",
            enabled=lambda s: s.out_of_distribution.enabled,
        ),
        Entry(
            "data_quality",
            "window",
            _window(
                lambda c: DataQuality(
                    c.settings.data_quality, c.need("feature_drift", FeatureDrift)
                )
            ),
            "check the feature pipeline for missing or malformed fields",
            "missing and malformed values of {subjects} over time",
            enabled=lambda s: s.data_quality.enabled,
            needs=("feature_drift",),
            stateful=False,
            subject_per="feature",
        ),
        Entry(
            "label_shift",
            "window",
            _window(
                lambda c: EstimatedLabelShift(
                    c.settings.label_shift,
                    c.need("prediction_drift", PredictionDrift),
                    c.labelled,
                    c.settings.performance.positive_class,
                )
            ),
            *_LABEL_SHIFT,
            enabled=lambda s: s.label_shift.enabled and s.label_shift.estimate,
            needs=("prediction_drift",),
            stateful=False,
            compare="whole",  # the labelled reference, once complete
        ),
        Entry(
            "estimated_performance",
            "window",
            _window(
                lambda c: EstimatedPerformance(
                    c.settings, c.need("prediction_drift", PredictionDrift), c.labelled
                )
            ),
            "performance is estimated to have fallen before labels came: look at the inputs "
            "that drifted and confirm with the first labels",
            "{subjects}, estimated before labels and realized after",
            enabled=lambda s: s.estimated_performance.enabled,
            needs=("prediction_drift",),
            stateful=False,
            compare="whole",  # the labelled reference, once complete
        ),
        Entry(
            "labels",
            "outcome",
            _outcome(lambda c: LabelCoverage()),
            "labels stopped arriving in time: check the labelling pipeline",
            "label coverage over time",
            compare="none",
        ),
        Entry(
            "concept_drift",
            "outcome",
            _outcome(lambda c: Residuals(c.settings.concept_drift)),
            *_CONCEPT,
            enabled=_concept_windowed,
            # Its cells follow the cycle already; a phase's few labels would blunt it.
            compare="whole",
            sample=_CLASSES,
        ),
        Entry(
            "performance",
            "outcome",
            _outcome(lambda c: Performance(c.settings.performance)),
            "review recent labelled errors; consider retraining",
            "{subjects} over time, with label coverage",
            enabled=lambda s: s.performance.enabled,
            sample=_CLASSES,
        ),
        Entry(
            "slice_performance",
            "outcome",
            _outcome(lambda c: Slices(c.settings.slices, c.settings.performance.positive_class)),
            "review the subgroup's errors with the model owner (human review)",
            "the slice table ({subjects})",
            enabled=lambda s: s.slices.enabled,
            subject_per="slice",
            sample=Sample(
                "slice values, up to SLICES__MAX_SLICES per dimension (the rest: other)",
                lambda s: s.slices.max_slices,
            ),
        ),
        Entry(
            "label_shift",
            "outcome",
            _outcome(
                lambda c: ObservedLabelShift(
                    c.settings.label_shift, c.need("performance", Performance)
                )
            ),
            *_LABEL_SHIFT,
            enabled=lambda s: s.label_shift.enabled,
            needs=("performance",),
            stateful=False,
        ),
        Entry(
            "fairness",
            "outcome",
            _outcome(lambda c: Fairness(c.need("slice_performance", Slices))),
            "review the gap with the model owner before the next release",
            "the slice table ({subjects})",
            enabled=lambda s: s.slices.enabled,
            needs=("slice_performance",),
            stateful=False,
            compare="none",
            subject_per="slice",
        ),
        Entry(
            "concept_drift",
            "sequential",
            _sequential(lambda c: Sequential(c.settings.concept_drift)),
            *_CONCEPT,
            enabled=_concept_river,
            compare="none",
            sample=Sample(
                "a regressor's latest absolute errors, one in each of ADWIN's smallest buckets",
                _adwin_singles,
            ),
        ),
        Entry(
            "shadow",
            "pair",
            _pair(lambda c: Shadow(c.settings.shadow, max_bytes=c.max_bytes)),
            "hold the rollout of the challenger until the disagreement is understood",
            "champion and challenger disagreement over time",
            enabled=lambda s: s.shadow.enabled,
            compare="none",
            sample=Sample(
                "challengers waiting for their champion (event id, version, prediction, "
                "score), up to SHADOW__MAX_WAITING and MAX_BUFFER_BYTES",
                lambda s: s.shadow.max_waiting,
            ),
        ),
    ]
)


def third_party(found: Iterable[EntryPoint], built_in: Registry = BUILT_IN) -> list[Entry]:
    """The entries that ``found`` (entry points of the ``streamwatch.detectors`` group)
    register. A :class:`~streamwatch.errors.ConfigError` names the entry point that
    cannot be loaded, is no :class:`Entry`, takes a name that is built in or taken
    already, is of kind ``pair`` (there is one, shadow's), or needs what is not there."""
    entries: list[Entry] = []
    origins: dict[str, str] = {}
    for origin, loaded in plugins.load(found):
        if not isinstance(loaded, Entry):
            what = type(loaded).__qualname__
            raise ConfigError(f"{origin}: loads an object of type {what}, not an Entry")
        if loaded in entries:
            continue  # the same package found twice on the path
        name = loaded.name
        if name in built_in:
            raise ConfigError(f"{origin}: detector {name!r} clashes with the built-in one")
        if name in origins:
            raise ConfigError(f"{origin}: detector {name!r} clashes with {origins[name]}")
        if loaded.kind == "pair":
            raise ConfigError(f"{origin}: detector {name!r} is of kind pair: shadow is the one")
        try:
            Registry([*built_in, *entries, loaded])
        except ValueError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        entries.append(loaded)
        origins[name] = origin
    return entries


@functools.cache
def default() -> Registry:
    """Every entry: the built-in ones, then those installed, read once per process."""
    return Registry([*BUILT_IN, *third_party(entry_points(group=ENTRY_POINT_GROUP))])


def per_subject() -> frozenset[str]:
    """Detectors with a subject per feature or slice (the report charts few of them)."""
    return default().per_subject()


def per_slice() -> frozenset[str]:
    return default().per_slice()


def hint(name: str) -> str | None:
    """What to do first about an alert of detector ``name`` (None: not registered)."""
    return default().hint(name)


def look_at(name: str) -> str | None:
    """Where the evidence of an alert of ``name`` is, with ``{subjects}`` to fill."""
    return default().look_at(name)


__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "Context",
    "Entry",
    "Kind",
    "Registry",
    "Sample",
    "build",
    "default",
    "hint",
    "look_at",
    "per_slice",
    "per_subject",
    "third_party",
]
