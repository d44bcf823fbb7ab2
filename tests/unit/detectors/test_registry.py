"""The registry: its checks, third-party entries through entry points, its lookups, and
the detector sets built from it (whose checkpoints keep format 6's keys)."""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import EntryPoint
from typing import Any, Self

import numpy as np
import pytest

from streamwatch.batch import Batch, Columns
from streamwatch.config import ConceptDriftSettings, DetectorSettings, DriftSettings, Settings
from streamwatch.detectors import DetectorSet, Finding, ModelBinning, Severity, registry
from streamwatch.detectors.entry import Context, Entry, Registry
from streamwatch.detectors.registry import BUILT_IN, ENTRY_POINT_GROUP, third_party
from streamwatch.errors import ConfigError
from streamwatch.pipeline.labelled import Labelled
from streamwatch.pipeline.outcomes import Outcomes
from streamwatch.windows import WindowBounds


class Events:
    """A third party's window detector: events per window, reported as they are."""

    name = "events"

    def __init__(self) -> None:
        self.n = 0

    def update(self, batch: Batch) -> None:
        self.n += batch.n

    def merge(self, other: Self) -> None:
        self.n += other.n

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n}

    def restore(self, state: Any) -> None:
        self.n = int(state["n"])

    def evaluate(self, model: str, window: WindowBounds, reference: Self) -> list[Finding]:
        return [
            Finding(model, self.name, "all", "events", self.n, 0.0, Severity.OK, reference.n,
                    self.n, window, f"{self.n} events")
        ]  # fmt: skip


EVENTS = Entry("events", "window", lambda c: Events(), "count them", "events over time")
OTHER_EVENTS = replace(EVENTS, hint="count them twice")  # another package's, same name
NOT_AN_ENTRY = object()


def point(name: str, attribute: str) -> EntryPoint:
    return EntryPoint(name, f"{__name__}:{attribute}", ENTRY_POINT_GROUP)


def test_a_third_party_entry_is_loaded_after_the_built_in_ones() -> None:
    assert third_party([point("events", "EVENTS"), point("again", "EVENTS")]) == [EVENTS]


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (replace(EVENTS, name="feature_drift"), "'feature_drift' clashes with the built-in one"),
        (replace(EVENTS, name="shadow", kind="outcome"), "'shadow' clashes with the built-in"),
        (replace(EVENTS, kind="pair"), "is of kind pair: shadow is the one"),
        (replace(EVENTS, needs=("performance",)), "needs performance, of kind window"),
    ],
)
def test_a_third_party_entry_that_does_not_fit_is_refused_naming_its_entry_point(
    entry: Entry, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{__name__}.WRONG", entry, raising=False)
    with pytest.raises(ConfigError, match=error) as refused:
        third_party([point("wrong", "WRONG")])
    assert f"entry point wrong = {__name__}:WRONG in group streamwatch.detectors" in str(
        refused.value
    )


def test_what_is_no_entry_or_cannot_be_loaded_is_refused() -> None:
    with pytest.raises(ConfigError, match="loads an object of type object, not an Entry"):
        third_party([point("nothing", "NOT_AN_ENTRY")])
    with pytest.raises(ConfigError, match="cannot be loaded: AttributeError"):
        third_party([point("missing", "MISSING")])


def test_two_third_parties_of_one_name_clash() -> None:
    with pytest.raises(ConfigError, match="'events' clashes with entry point first"):
        third_party([point("first", "EVENTS"), point("second", "OTHER_EVENTS")])


def test_the_registry_checks_its_entries_together() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        Registry([EVENTS, EVENTS])
    with pytest.raises(ValueError, match="say different things"):
        Registry([EVENTS, replace(EVENTS, kind="outcome", hint="other")])
    with pytest.raises(ValueError, match="needs events, of kind window and registered before"):
        Registry([replace(EVENTS, name="rate", needs=("events",)), EVENTS])
    with pytest.raises(ValueError, match="one pair detector"):
        Registry([*BUILT_IN, replace(EVENTS, kind="pair")])
    with pytest.raises(ValueError, match="an identifier"):
        replace(EVENTS, name="two words")


def test_the_default_registry_is_read_once_with_every_built_in_entry() -> None:
    assert registry.default() is registry.default()
    assert set(BUILT_IN) <= set(registry.default())


def test_per_subject_is_what_the_engine_and_the_report_said() -> None:
    # PER_FEATURE in the engine and PER_SUBJECT in the report before the registry.
    assert registry.per_subject() == {
        "feature_drift",
        "data_quality",
        "slice_performance",
        "fairness",
    }
    assert registry.per_slice() == {"slice_performance", "fairness"}


def test_every_family_has_its_hint_and_where_to_look() -> None:
    for name in BUILT_IN.names():
        assert registry.hint(name)
        assert registry.look_at(name)
    assert registry.hint("nothing") is None
    assert registry.look_at("nothing") is None


def test_a_family_of_two_kinds_is_one_name() -> None:
    kinds = {(e.name, e.kind) for e in BUILT_IN if e.name in {"concept_drift", "label_shift"}}
    assert kinds == {
        ("concept_drift", "outcome"),
        ("concept_drift", "sequential"),
        ("label_shift", "window"),
        ("label_shift", "outcome"),
    }
    assert not next(e for e in BUILT_IN if e.kind == "sequential").merges


def test_a_detector_that_needs_another_is_built_only_with_it() -> None:
    settings = DetectorSettings(feature_drift=DriftSettings(enabled=False))
    built = DetectorSet(settings, ModelBinning(settings))
    assert "feature_drift" not in built.detectors
    assert "data_quality" not in built.detectors  # it reads feature drift's columns


def batch(n: int) -> Batch:
    rng = np.random.default_rng(0)
    return Batch(np.arange(n, dtype=np.float64), Columns({"x": rng.normal(0, 1, n)}), Columns())


def test_the_checkpoint_keeps_the_keys_of_format_6() -> None:
    settings = DetectorSettings()
    window = DetectorSet(settings, ModelBinning(settings))
    assert list(window.snapshot()) == [
        "n",
        "feature_drift",
        "prediction_drift",
        "operational",
        "out_of_distribution",
    ]
    assert set(Labelled(settings).snapshot()) == {"performance", "slices", "errors"}
    outcomes = Outcomes("m", Settings(), ModelBinning(settings).features)
    assert outcomes.snapshot()["sequential"] is None
    river = Settings(
        detectors=DetectorSettings(concept_drift=ConceptDriftSettings(detector="adwin"))
    )
    state = Outcomes("m", river, ModelBinning(settings).features).snapshot()["sequential"]
    assert set(state) == {"detector", "changes"}


def test_a_third_party_window_detector_is_built_judged_and_checkpointed_by_name() -> None:
    settings = DetectorSettings()
    detectors = Registry([*BUILT_IN, EVENTS])
    grid = ModelBinning(settings)
    grid.fit(batch(500))
    reference, window = (DetectorSet(settings, grid, detectors=detectors) for _ in range(2))
    reference.update(batch(500))
    window.update(batch(300))
    findings = window.evaluate("m", WindowBounds(1, 0.0, 60.0), reference)
    assert [(f.value, f.n_reference) for f in findings if f.detector == "events"] == [(300, 500)]
    assert window.snapshot()["events"] == {"n": 300}
    restored = DetectorSet(settings, grid, detectors=detectors)
    restored.restore(window.snapshot())
    assert restored.snapshot() == window.snapshot()


def test_a_context_says_what_a_factory_needs_and_did_not_get() -> None:
    context = Context(DetectorSettings())
    with pytest.raises(TypeError, match="needs the feature_drift detector"):
        context.need("feature_drift", Events)
    with pytest.raises(TypeError, match="built with the model's binning"):
        context.grid()
