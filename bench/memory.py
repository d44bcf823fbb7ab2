"""Memory: peak RSS against events per window, and the size of one model's state.

The target: memory does not grow with events per window (peak RSS at 1,000,000 events
per window within 50 MB of that at 10,000) and the state of one such model is under 1 MB.

Every run is a fresh subprocess of this interpreter: one model of the shape of
replay_throughput.py (20 numeric and 5 categorical features, a score and a predicted
class, no labels), count windows of N events, default settings otherwise. Events are
generated lazily, one poll of POLL_RECORDS at a time, and fed to ``Engine.process``;
the run reports its peak RSS (``ru_maxrss``) and its RSS at the end first, then the
size of its checkpoint (msgpack of ``Engine.snapshot()``, and the SQLite file that
``Engine.checkpoint`` writes), then its peak RSS again, now with the checkpoint's
transient copies.

Both window sizes see the same stream: two windows of 1,000,000 and one more poll
(the first window becomes the reference, the second is evaluated against it). The
stream matters apart from the window size: predictions wait in the label join for
their labels, up to ``labels.max_pending`` (200,000) per model whatever the window
size, and its dict reallocates itself as the oldest entries make room, so peak RSS
steps up with the events seen until it levels off. A third run of 10,000 per window
stops after two and a half windows (25,000 events, the join an eighth as full): the
difference from it is what the join costs. The baseline imports streamwatch, builds
the engine and feeds nothing. The two long runs go on in parallel.

    .venv/bin/python bench/memory.py    (each long run is about a minute of CPU)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch.config import LabelSettings, Settings, WindowSettings
from streamwatch.events import Message, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import POLL_RECORDS, Engine
from streamwatch.state.store import StateStore

MODEL = "bench"
START_MS = 1_767_225_600_000  # 2026-01-01: in the past, never a future timestamp
STEP_MS = 30
MAX_PENDING = LabelSettings().max_pending
TARGET_RSS_MB = 50.0
TARGET_STATE_BYTES = 1 << 20
FEATURES = [*(f"x{j}" for j in range(20)), *(f"c{j}" for j in range(5))]
CATEGORIES = np.array([f"cat{k}" for k in range(8)], dtype=np.object_)


def chunk(rng: np.random.Generator, start: int, n: int) -> list[bytes]:
    """Events ``start`` to ``start + n`` (replay_throughput's stream, one poll of it)."""
    numeric = rng.normal(0.0, 1.0, (n, 20)).round(4).tolist()
    categorical = CATEGORIES[rng.integers(0, 8, (n, 5))].tolist()
    score = rng.uniform(0, 1, n).round(4).tolist()
    encode = msgspec.json.encode
    return [
        encode(
            {
                "event_id": f"e{start + i}",
                "model_id": MODEL,
                "timestamp": START_MS + (start + i) * STEP_MS,
                "features": dict(zip(FEATURES, numeric[i] + categorical[i], strict=True)),
                "score": p,
                "prediction": int(p > 0.5),
            }
        )
        for i, p in enumerate(score)
    ]


def rss_now_mb() -> float:
    """Resident set size now (Linux), to tell the steady state from a transient peak."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def size(value: Any) -> int:
    return len(msgspec.msgpack.encode(value))


def worker(per_window: int, events: int) -> dict[str, Any]:
    """One run: feed ``events`` events in windows of ``per_window``, then checkpoint."""
    started = time.perf_counter()
    settings = Settings(window=WindowSettings(mode="count", size=str(per_window)), sinks={})
    engine = Engine(settings, [], Metrics(CollectorRegistry()))
    rng = np.random.default_rng(0)
    for start in range(0, events, POLL_RECORDS):
        lines = chunk(rng, start, min(POLL_RECORDS, events - start))
        engine.process([Message(raw, Origin("bench", 0, start + i)) for i, raw in enumerate(lines)])
    result: dict[str, Any] = {
        "peak_mb": rss_mb(),
        "now_mb": rss_now_mb(),
        "evaluated": engine.metrics.total("streamwatch_windows_closed", role="evaluated"),
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time(),
    }
    if not events:
        return result
    monitor = engine.processor.models[MODEL]
    snapshot = engine.checkpointer.state(None)
    model = snapshot["models"][MODEL]
    outcomes = model["outcomes"]
    without_join = {**model, "outcomes": {**outcomes, "join": None}}
    result["join_entries"] = len(monitor.outcomes.join)
    result["sizes"] = sizes = {
        "binning": size(model["binning"]),
        "reference": size(model["reference"]),
        "open windows": size(model["windows"]),
        "outcomes except the label join": size({**outcomes, "join": None}),
        "label join": size(outcomes["join"]),
        "model without the label join": size(without_join),
        "model, all of it": size(model),
        "engine snapshot": size(snapshot),
    }
    del snapshot, model, outcomes, without_join
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.sqlite"
        store = StateStore(path, settings)
        engine.checkpointer.checkpoint(store)
        store.close()  # the last connection folds the WAL into the file
        files = sum(p.stat().st_size for p in Path(directory).iterdir())
        sizes["SQLite file after a checkpoint"] = files
    result["peak_with_checkpoint_mb"] = rss_mb()
    return result


@dataclass(frozen=True)
class Run:
    label: str
    per_window: int
    events: int


def spawn(run: Run) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--worker", str(run.per_window), str(run.events)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def collect(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a run failed ({process.args!r}, exit {process.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


def mb(n: float) -> str:
    return f"{n / (1 << 20):.2f} MB" if n >= 1 << 20 else f"{n / 1024:.1f} KB"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    started = time.perf_counter()
    events = 2 * 1_000_000 + POLL_RECORDS
    short, small, large = (
        Run("10,000 (2.5 windows)", 10_000, 25_000),
        Run("10,000", 10_000, events),
        Run("1,000,000", 1_000_000, events),
    )
    running = {run.label: spawn(run) for run in (large, small)}  # one core each
    results = {run.label: collect(spawn(run)) for run in (Run("baseline", 10_000, 0), short)}
    results |= {label: collect(process) for label, process in running.items()}
    base = results["baseline"]["peak_mb"]

    print("memory, one model, 20 numeric + 5 categorical features, count windows, no labels")
    print(f"baseline (streamwatch imported, Engine built, nothing fed): {base:.1f} MB peak RSS")
    print(
        f"{'events/window':<22}{'events':>10}{'evaluated':>10}{'join':>9}{'peak':>8}"
        f"{'-base':>8}{'Δ 10k':>8}{'Δ 10k 2.5w':>11}{'end':>7}{'+ckpt':>7}{'seconds':>9}"
    )
    for run in (short, small, large):
        r = results[run.label]
        print(
            f"{run.label:<22}{run.events:>10,}{r['evaluated']:>10}{r['join_entries']:>9,}"
            f"{r['peak_mb']:>8.1f}{r['peak_mb'] - base:>8.1f}"
            f"{r['peak_mb'] - results[small.label]['peak_mb']:>+8.1f}"
            f"{r['peak_mb'] - results[short.label]['peak_mb']:>+11.1f}"
            f"{r['now_mb']:>7.1f}{r['peak_with_checkpoint_mb']:>7.1f}{r['seconds']:>9.1f}{r['cpu']:>6.0f}"
        )
    print(
        "MB of RSS. join: predictions waiting in the label join at the end; peak: ru_maxrss"
        " after\nthe stream; -base: less the baseline's; Δ 10k: against 10,000 per window on"
        " the same\nstream; Δ 10k 2.5w: against the short run; end: RSS after the stream;"
        " +ckpt: peak once\na checkpoint was written too; seconds: wall clock of the stream, cpu:"
        " its CPU seconds."
    )

    columns = (short, small, large)
    print(f"\nstate size{'':<26}" + "".join(f"{c.label.split()[0]:>13}" for c in columns))
    for name in results[large.label]["sizes"]:
        cells = (mb(results[c.label]["sizes"][name]) for c in columns)
        print(f"  {name:<34}" + "".join(f"{cell:>13}" for cell in cells))
    per_entry = (
        results[c.label]["sizes"]["label join"] / results[c.label]["join_entries"] for c in columns
    )
    print(f"  {'label join, bytes per entry':<34}" + "".join(f"{n:>13.0f}" for n in per_entry))
    print("(the short run's column is 10,000 per window after 2.5 windows)")

    peak = results[large.label]["peak_mb"]
    same, first = (results[run.label]["peak_mb"] for run in (small, short))
    detectors = results[large.label]["sizes"]["model without the label join"]
    whole = results[large.label]["sizes"]["model, all of it"]
    print(
        f"\ntarget: peak RSS at 1,000,000 per window within {TARGET_RSS_MB:.0f} MB of 10,000:"
        f"\n  on the same stream: {peak - same:+.1f} MB, {verdict(peak - same <= TARGET_RSS_MB)}"
        f"\n  against 10,000 after 2.5 windows: {peak - first:+.1f} MB,"
        f" {verdict(peak - first <= TARGET_RSS_MB)} (the label join fills up: not the windows)"
    )
    print(
        "target: the state of one model under 1 MB:"
        f"\n  without the label join: {mb(detectors)}, {verdict(detectors < TARGET_STATE_BYTES)}"
        f"\n  with the join (max_pending {MAX_PENDING:,}, full): {mb(whole)},"
        f" {verdict(whole < TARGET_STATE_BYTES)}"
    )
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(worker(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        main()
