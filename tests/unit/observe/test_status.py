"""``streamwatch status`` (status.py): what a state file says, read beside the daemon.
tests/unit/test_report.py reads the demo's state file too."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamwatch.config import Settings, StateSettings, WindowSettings
from streamwatch.errors import StateError
from streamwatch.events import Message, Origin
from streamwatch.observe import status
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.state.store import Checkpoint, StateStore
from tests.factories import Batches, event

T0 = 1_780_000_000_000  # 2026-05-28T20:26:40Z, in epoch milliseconds


def settings(path: Path) -> Settings:
    return Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0), state=StateSettings(path=path)
    )


def drifting() -> list[Message]:
    """20 minutes of 150 events of model "m"; feature x jumps by 3 sd from minute 12."""
    messages: list[Message] = []
    for minute in range(20):
        for i in range(150):
            x = ((i * 7919) % 150) / 150.0 + (3.0 if minute >= 12 else 0.0)
            stamp = T0 + minute * 60_000 + i * 400
            raw = event(f"{minute}-{i}", timestamp=stamp, features={"x": x})
            messages.append(Message(raw, Origin("events", 0, len(messages))))
    return messages


def test_the_summary_names_the_offsets_each_models_last_window_and_its_firing_alerts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    s = settings(path)
    engine = Engine(s, [], Metrics(CollectorRegistry()))
    engine.metrics.lag.labels(topic="events", partition="0").set(250)  # as a source measures
    messages = drifting()
    store = StateStore(path, s)
    try:
        engine.run(Batches([messages[k : k + 500] for k in range(0, len(messages), 500)]), store)
        checkpoint = store.load()
    finally:
        store.close()
    assert checkpoint is not None

    lines = status.summary(path, now=checkpoint.written_at + 90).splitlines()
    assert lines[0] == f"state     {path}"
    assert lines[1].startswith("written   ")
    assert lines[1].endswith("Z (90 s ago)")
    assert lines[2] == "offset    events:0 next 3,000, lag 250"
    model = lines[lines.index("model m") :]
    assert (
        model[1]
        == "  last window   2026-05-28T20:46:00Z to 2026-05-28T20:47:00Z (evaluated, 100 events)"
    )
    assert model[2] == "  labels        0% of the last evaluated window's"  # none came
    firing = status.firing(checkpoint)
    assert model[3] == f"  alerts        {len(firing)} firing:"
    # The drift began at 20:38:40, in the window that ends at 20:39.
    assert "    critical feature_drift · x (since the window ending 2026-05-28T20:39:00Z)" in model
    assert len(model) == 4 + len(firing)


def test_a_state_file_without_a_checkpoint_says_so_and_a_missing_one_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path, settings(path)).close()
    assert status.summary(path) == f"{path}: no checkpoint yet"
    with pytest.raises(StateError, match="no state file"):
        status.summary(tmp_path / "none.sqlite")


def test_firing_alerts_are_those_announced_and_not_resolved() -> None:
    def track(model: str, subject: str, severity: str | None, sent: float | None) -> list[object]:
        labels = {"model": model, "detector": "feature_drift", "subject": subject}
        return [labels, [True], 0, severity, 1000.0 if model == "b" else 2000.0, sent]

    policy = {
        "1": track("b", "x", "critical", 1005.0),  # announced: firing
        "2": track("a", "x", "warning", 2005.0),  # announced: firing
        "3": track("a", "y", "critical", None),  # breaching, not announced yet
        "4": track("a", "z", None, 1500.0),  # resolved
    }
    checkpoint = Checkpoint({"models": {}, "policy": policy}, {}, 0.0)
    assert status.firing(checkpoint) == [
        status.Firing("a", "warning", "feature_drift", "x", 2000.0),
        status.Firing("b", "critical", "feature_drift", "x", 1000.0),
    ]
