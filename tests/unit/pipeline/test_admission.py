"""Which models are watched (admission.py): the allow-list, the model limit under a flood
of junk ids, and idle models let go with their windows recorded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streamwatch.config import ReferenceSettings, Settings, StateSettings, WindowSettings
from streamwatch.events import Message, Origin
from streamwatch.observe import history
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.conclusion import Produced
from streamwatch.pipeline.engine import Engine
from streamwatch.state.store import StateStore
from tests.factories import Batches, FakeChangelog, event

MINUTE = 60_000


def settings(**overrides: Any) -> Settings:
    return Settings(
        window=WindowSettings(size="1m", allowed_lateness=0),
        reference=ReferenceSettings(min_events=100),
        **overrides,
    )


def minutes(model: str, first: int, last: int, shift: float = 0.0, n: int = 100) -> list[bytes]:
    """``n`` events a minute of ``model``, feature x spread evenly (plus ``shift``)."""
    return [
        event(
            f"{model}-{m}-{i}",
            model,
            m * MINUTE + i * (MINUTE // n),
            features={"x": (i * 37 % n) / n + shift},
        )
        for m in range(first, last)
        for i in range(n)
    ]


def messages(raws: Sequence[bytes], start: int = 0, partition: int = 0) -> list[Message]:
    return [Message(raw, Origin("events", partition, start + i)) for i, raw in enumerate(raws)]


def test_events_of_models_not_in_the_allow_list_are_dead_letters() -> None:
    e = Engine(settings(models=["fraud"]), [], Metrics(CollectorRegistry()))
    raws = [event(f"e{i}", model) for i, model in enumerate(["fraud", "junk", "fraud", "other"])]
    e.process(messages(raws))
    assert set(e.processor.models) == {"fraud"}
    assert e.metrics.total("streamwatch_bad_events", reason="model_unknown") == 2
    assert e.metrics.total("streamwatch_bad_events", reason="model_limit") == 0


def test_scaled_out_unknown_models_take_no_home() -> None:
    changelog = FakeChangelog()
    e = Engine(settings(models=["fraud"]), [], Metrics(CollectorRegistry()), changelog=changelog)  # type: ignore[arg-type]
    e.process(messages([event("a", "fraud"), event("b", "junk")], partition=3))
    assert e.ownership.homes == {"fraud": 3}
    assert e.metrics.total("streamwatch_bad_events", reason="model_unknown") == 1


def test_a_flood_of_junk_ids_never_pushes_out_an_active_model_and_is_let_go_when_idle() -> None:
    e = Engine(settings(max_models=50, model_idle_ttl="5m"), [], Metrics(CollectorRegistry()))
    offset = 0

    def feed(raws: Sequence[bytes]) -> Produced:
        nonlocal offset
        outcome = e.process(messages(raws, offset))
        offset += len(raws)
        return outcome

    feed(minutes("live", 0, 3))
    junk = [event(f"j{i}", f"junk-{i}", 3 * MINUTE + i) for i in range(10_000)]
    feed(junk)
    assert len(e.processor.models) == 50
    assert "live" in e.processor.models
    assert e.metrics.total("streamwatch_bad_events", reason="model_limit") == 10_000 - 49
    feed([event("r1", "real", 4 * MINUTE)])  # a new real model: no slot yet
    assert "real" not in e.processor.models
    closed = [w for m in range(4, 12) for w in feed(minutes("live", m, m + 1)).closed]
    # The live model was judged every minute through the flood.
    assert [w.bounds.index for w in closed if w.model == "live"] == [2, *range(4, 11)]
    # Five minutes after the flood its ids were let go (unjudged: no reference to judge
    # their one event by); the slots are free again.
    assert set(e.processor.models) == {"live"}
    assert not [w for w in closed if w.model.startswith("junk")]
    feed([event("r2", "real", 12 * MINUTE)])
    assert "real" in e.processor.models


def test_an_idle_model_is_let_go_with_its_open_windows_recorded(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    s = settings(model_idle_ttl="10m", state=StateSettings(path=path, checkpoint_interval=0))
    e = Engine(s, [], Metrics(CollectorRegistry()))
    # "quiet" sends for 4 minutes (the first is its reference), then drifts in its
    # last minute and stops; "busy" goes on for 20 minutes.
    batches = [
        messages(minutes("quiet", 0, 3) + minutes("busy", 0, 3)),
        messages(minutes("quiet", 3, 4, shift=3.0) + minutes("busy", 3, 4), 600),
        *(messages(minutes("busy", m, m + 1), 1000 + 100 * m) for m in range(4, 20)),
    ]
    store = StateStore(path, s)
    try:
        outcomes = e.run(Batches(batches), store)
    finally:
        store.close()
    # Let go with busy's minute 13 (its last event at 3:59.4, plus 10 minutes), its last
    # window closed then: not left open until the end of input (the last outcome).
    let_go = next(
        i
        for i, o in enumerate(outcomes)
        for w in o.closed
        if w.model == "quiet" and w.n == 100 and w.bounds.index == 3
    )
    assert let_go == 2 + 13 - 4
    assert len(outcomes) == 19
    windows = [w for w in outcomes[let_go].closed if w.model == "quiet" and w.role != "outcomes"]
    assert [(w.bounds.index, w.role) for w in windows] == [(3, "evaluated")]
    assert any(f.severity.value != "ok" for f in windows[0].findings)  # it drifted
    recorded = history.read(path, model="quiet")
    assert [(r.start // 60, r.role) for r in recorded if r.role != "outcomes"] == [
        (0, "reference"),
        (1, "evaluated"),
        (2, "evaluated"),
        (3, "evaluated"),
    ]
    assert set(e.processor.models) == {"busy"}
    assert not [t for t in e.conclusion.policy.tracks.values() if t.labels["model"] == "quiet"]


def test_scaled_out_a_model_let_go_leaves_its_partition_state(tmp_path: Path) -> None:
    s = settings(model_idle_ttl="10m")
    changelog = FakeChangelog()
    e = Engine(s, [], Metrics(CollectorRegistry()), changelog=changelog)  # type: ignore[arg-type]
    store = StateStore(tmp_path / "state.sqlite", s)
    try:
        e.process(messages(minutes("quiet", 0, 1), partition=1))
        e.process(messages(minutes("busy", 0, 20), partition=2))
        assert "quiet" not in e.processor.models
        e.checkpointer.checkpoint(store)
        e.process(messages(minutes("busy", 20, 21), 2000, partition=2))
    finally:
        store.close()
    assert "quiet" not in e.ownership.homes
    assert 1 in changelog.records  # its partition's state, rewritten without it
    assert 1 not in e.positions.changed
