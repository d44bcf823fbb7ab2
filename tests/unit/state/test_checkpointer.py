"""The checkpointer's numbered steps: partials published, then the state file, then the
changelog (if there is one), and only then notifications released and offsets durable."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from streamwatch.config import LogSinkSettings, Settings, StateSettings, WindowSettings
from streamwatch.events import Message, Offsets, Origin
from streamwatch.observe.history import WindowRecord
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.scaleout.spread import Partial
from streamwatch.sinks import RoutedSink
from streamwatch.sinks.log import LogSink
from streamwatch.state.store import ENGINE, StateStore, partition_scope
from tests.factories import FakeChangelog, event

Steps = list[str]


class Recording(FakeChangelog):
    def __init__(self, steps: Steps) -> None:
        super().__init__()
        self.steps = steps

    def publish(self, partials: Sequence[Partial]) -> None:
        self.steps.append("publish")
        super().publish(partials)

    def write(self, states: Mapping[int, tuple[bytes, Offsets]]) -> None:
        self.steps.append(f"changelog {sorted(states)}")
        super().write(states)


class Store(StateStore):
    steps: Steps

    def save_scopes(
        self,
        scopes: Mapping[str, tuple[bytes, Offsets]],
        closed: Sequence[WindowRecord] = (),
        lag: Mapping[str, int] | None = None,
    ) -> None:
        self.steps.append(f"state file {sorted(scopes)}")
        super().save_scopes(scopes, closed, lag)


def drifting(partition: int, model: str) -> list[Message]:
    """20 one-minute windows; x jumps by 3 sd from minute 12: a notification."""
    out: list[Message] = []
    for minute in range(20):
        for i in range(150):
            x = ((i * 7919) % 150) / 150.0 + (3.0 if minute >= 12 else 0.0)
            raw = event(
                f"{model}{minute}-{i}",
                model_id=model,
                timestamp=minute * 60_000 + i * 400,
                features={"x": x},
            )
            out.append(Message(raw, Origin("t", partition, len(out))))
    return out


def engine(tmp: Path, changelog: FakeChangelog | None) -> tuple[Engine, Store, Steps]:
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0),
        state=StateSettings(
            path=tmp / "state.sqlite", changelog_topic=None if changelog is None else "cl"
        ),
    )
    sinks = [RoutedSink(LogSink("log", io.StringIO()), LogSinkSettings(kind="log"))]
    e = Engine(settings, sinks, Metrics(CollectorRegistry()), changelog=changelog)  # type: ignore[arg-type]
    e.conclusion.start(durable=True)  # as in run() with a state file
    store = Store(settings.state.path, settings)
    steps: Steps = changelog.steps if isinstance(changelog, Recording) else []
    store.steps = steps
    return e, store, steps


def test_alone_the_whole_state_is_one_scope_and_its_notifications_go_once_written(
    tmp_path: Path,
) -> None:
    e, store, steps = engine(tmp_path, None)
    (made,) = e.process(drifting(0, "m")).notifications
    assert e.outbox.counts() == {("log", "held"): 1}
    durable = e.checkpointer.checkpoint(store)
    assert steps == [f"state file {[ENGINE]}"]
    assert durable == {("t", 0): 3000}
    assert e.outbox.counts() == {("log", "pending"): 1}
    checkpoint = store.load()
    assert checkpoint is not None
    assert set(checkpoint.state["models"]) == {"m"}
    assert [row[0] for row in checkpoint.state["outbox"]] == [made.id]


def test_scaled_out_the_steps_run_in_order_for_the_changed_partitions_only(
    tmp_path: Path,
) -> None:
    steps: Steps = []
    e, store, _ = engine(tmp_path, Recording(steps))
    e.process(drifting(0, "m") + drifting(1, "n"))
    e.checkpointer.checkpoint(store, [1])
    # (No spread model here: nothing to publish; tests/unit/scaleout/test_spread.py has them.)
    assert steps == [f"state file {[partition_scope(1)]}", "changelog [1]"]
    assert e.positions.changed == {0}
    assert {(r.model, r.status) for r in e.outbox.listed()} == {("m", "held"), ("n", "pending")}


def test_a_failed_changelog_write_keeps_the_partition_changed_and_its_notifications_held(
    tmp_path: Path,
) -> None:
    steps: Steps = []
    changelog = Recording(steps)
    e, store, _ = engine(tmp_path, changelog)
    e.process(drifting(0, "m"))
    changelog.failing = True
    assert e.checkpointer.checkpoint(store) == {}  # nothing durable to commit
    assert steps == [f"state file {[partition_scope(0)]}", "changelog [0]"]  # refused
    assert e.positions.changed == {0}
    assert e.outbox.counts() == {("log", "held"): 1}
    changelog.failing = False
    assert e.checkpointer.checkpoint(store) == {("t", 0): 3000}
    assert e.outbox.counts() == {("log", "pending"): 1}
