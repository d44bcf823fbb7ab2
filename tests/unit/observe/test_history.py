"""The window history: written with checkpoints, replaced on re-evaluation, pruned."""

from __future__ import annotations

from pathlib import Path

from streamwatch.config import HistorySettings, Settings, WindowSettings
from streamwatch.detectors import Distribution, Finding, Severity
from streamwatch.observe import history
from streamwatch.pipeline.monitor import ClosedWindow
from streamwatch.state.store import StateStore
from streamwatch.windows import WindowBounds

HOUR = 3600.0


def closed(model: str, index: int, value: float = 0.3) -> ClosedWindow:
    bounds = WindowBounds(index, index * HOUR, (index + 1) * HOUR)
    finding = Finding(
        model, "feature_drift", "amount", "wasserstein", value, 0.25,
        Severity.CRITICAL if value >= 0.25 else Severity.OK, 900, 1000, bounds,
        "feature 'amount' drifted", {"p_value": 1e-9},
    )  # fmt: skip
    shares = Distribution("feature_drift", "amount", "numeric", ("0", "1"), (0.5, 0.5), (0.2, 0.8))
    return ClosedWindow(model, bounds, 1000, "evaluated", [finding], [shares])


def save(store: StateStore, *windows: ClosedWindow) -> None:
    records = [history.record(w, w.findings, None) for w in windows]
    store.save({"models": {}}, {}, closed=records)


def test_records_round_trip_with_the_checkpoint_and_a_replayed_window_replaces_its_own(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state.sqlite", Settings())
    save(store, closed("fraud", 1), closed("eta", 1))
    save(store, closed("fraud", 1, value=0.1), closed("fraud", 2))  # 1 evaluated again
    store.close()
    records = history.read(tmp_path / "state.sqlite")
    assert [(r.model, r.start) for r in records] == [
        ("eta", HOUR),
        ("fraud", HOUR),
        ("fraud", 2 * HOUR),
    ]
    again = history.read(tmp_path / "state.sqlite", model="fraud")[0]
    assert again.statistics[0].value == 0.1
    assert again.statistics[0].explanation == ""  # kept only where a check breached
    first = history.read(tmp_path / "state.sqlite", model="eta")[0]
    assert first.breaches()[0].explanation == "feature 'amount' drifted"
    assert first.distributions[0].current == (0.2, 0.8)
    assert history.read(tmp_path / "state.sqlite", since=1.5 * HOUR)[0].start == HOUR


def test_each_model_keeps_its_newest_windows_within_the_age_limit(tmp_path: Path) -> None:
    keep = HistorySettings(max_age=10 * HOUR, max_windows=5)
    store = StateStore(tmp_path / "state.sqlite", Settings(history=keep))
    save(store, *(closed("fraud", i) for i in range(20)), closed("eta", 0))
    save(store, closed("eta", 30))
    store.close()
    fraud = history.read(tmp_path / "state.sqlite", model="fraud")
    assert [int(r.start // HOUR) for r in fraud] == [15, 16, 17, 18, 19]
    eta = history.read(tmp_path / "state.sqlite", model="eta")
    assert [int(r.start // HOUR) for r in eta] == [30]  # window 0 ended 30 h before


def test_count_windows_are_pruned_by_count_alone(tmp_path: Path) -> None:
    # A slow stream: each window of 1,000 events spans 20 days, past the 10-day limit.
    keep = HistorySettings(max_age=10 * 24 * HOUR, max_windows=5)
    window = WindowSettings(mode="count", size="1000")
    store = StateStore(tmp_path / "state.sqlite", Settings(history=keep, window=window))
    save(store, *(closed("fraud", i * 20 * 24) for i in range(8)))
    store.close()
    fraud = history.read(tmp_path / "state.sqlite", model="fraud")
    assert [int(r.start // HOUR) // (20 * 24) for r in fraud] == [3, 4, 5, 6, 7]


def test_no_history_is_written_when_it_is_off(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite", Settings(history=HistorySettings(enabled=False)))
    save(store, closed("fraud", 1))
    store.close()
    assert history.read(tmp_path / "state.sqlite") == []
