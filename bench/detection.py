"""Detection quality: delay after a known change, and false alarms when nothing changes.

Six scenarios on a binary classifier's stream (8 numeric and 2 categorical features,
a segment, latency, labels), 2,000 events per one-minute window, the change at window
10 of 20: covariate shift (one feature +0.5 sd), label shift (positives 30% -> 50%,
p(x|y) fixed), concept drift (p(y|x) changes: 20% of labels flip), one degraded slice
(5% of traffic, accuracy 85% -> 60%), a latency spike (5% of events ten times slower),
a schema change (a feature disappears). False alarms come from 300 windows without any
change, reported per 1,000.

Side by side on the same windows: streamwatch (the real engine, every detector on);
Evidently's default DataDriftPreset on the features and the prediction, each window
against the first, read two ways: its dataset-drift verdict (half the columns drifted)
and "any column drifted"; river's ADWIN run per window on each feature's values, the
errors and the latencies. Evidently runs only where it is installed (kept out of the runtime
dependencies: `make bench` installs it into .venv-bench).

    make bench      (or: .venv-bench/bin/python bench/detection.py)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch.config import LabelSettings, ReferenceSettings, Settings, WindowSettings
from streamwatch.engine import Engine
from streamwatch.events import Origin
from streamwatch.metrics import Metrics

PER_WINDOW = 2000
WINDOWS = 20
CHANGE = 10
NULL_WINDOWS = 300
REGIONS = np.array(["EU", "NA", "APAC", "LATAM", "MEA"])
SHARES = np.array([0.4, 0.3, 0.2, 0.05, 0.05])


@dataclass
class Window:
    features: dict[str, np.ndarray]  # numeric and categorical columns
    score: np.ndarray
    prediction: np.ndarray
    label: np.ndarray
    region: np.ndarray
    latency: np.ndarray


def make_window(rng: np.random.Generator, scenario: str, changed: bool) -> Window:
    n = PER_WINDOW
    positive_rate = 0.5 if changed and scenario == "label shift" else 0.3
    label = rng.random(n) < positive_rate
    x = rng.normal(0.0, 1.0, (n, 8)) + label[:, None] * 0.8  # p(x|y): fixed per class
    if changed and scenario == "covariate shift":
        x[:, 0] += 0.5
    logit = (x * 0.8).sum(axis=1) / 3 - 1.2
    score = 1 / (1 + np.exp(-logit))
    prediction = score > 0.5
    region = rng.choice(REGIONS, n, p=SHARES)
    if changed and scenario == "concept drift":
        flip = rng.random(n) < 0.2
        label = np.where(flip, ~label, label)
    if changed and scenario == "degraded slice":
        wrong = (region == "LATAM") & (rng.random(n) < 0.3)
        prediction = np.where(wrong, ~label, prediction)
    latency = rng.gamma(4.0, 3.0, n)
    if changed and scenario == "latency spike":
        latency[rng.random(n) < 0.05] *= 10
    features: dict[str, np.ndarray] = {f"x{j}": x[:, j].round(4) for j in range(8)}
    features["channel"] = rng.choice(np.array(["web", "app", "pos"]), n, p=[0.5, 0.35, 0.15])
    features["device"] = rng.choice(np.array(["ios", "android", "desktop"]), n)
    if changed and scenario == "schema change":
        del features["x7"]
    return Window(
        features, score.round(5), prediction.astype(int), label.astype(int), region, latency
    )


def stream(scenario: str, seed: int, windows: int) -> list[Window]:
    rng = np.random.default_rng(seed)
    changes = scenario != "no change"
    return [make_window(rng, scenario, changes and w >= CHANGE) for w in range(windows)]


# -- streamwatch ----------------------------------------------------------------------


def streamwatch(windows: list[Window], scenario: str) -> set[int]:
    """The windows in which any alert fired (besides the first, the reference)."""
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        labels=LabelSettings(horizon=0.0),
        reference=ReferenceSettings(min_events=PER_WINDOW),
        sinks={},
    )
    engine = Engine(settings, [], Metrics(CollectorRegistry()))
    encode = msgspec.json.encode
    offset = 0
    alarms: set[int] = set()
    for w, win in enumerate(windows):
        lines = []
        for i in range(PER_WINDOW):
            t = w * 60_000 + i * (60_000 // PER_WINDOW)
            features = {
                k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in win.features.items()
            }
            lines.append(
                encode(
                    {
                        "event_id": f"{w}-{i}",
                        "model_id": "m",
                        "timestamp": t,
                        "features": features,
                        "score": float(win.score[i]),
                        "prediction": int(win.prediction[i]),
                        "segments": {"region": str(win.region[i])},
                        "latency_ms": float(win.latency[i]),
                    }
                )
            )
        # The window's labels come with the next window's predictions.
        lines += [
            encode(
                {
                    "event_id": f"{w}-{i}",
                    "model_id": "m",
                    "label": int(win.label[i]),
                    "timestamp": w * 60_000 + 60_000 + i,
                }
            )
            for i in range(PER_WINDOW)
        ]
        outcome = engine.process([(raw, Origin("b", 0, offset + k)) for k, raw in enumerate(lines)])
        offset += len(lines)
        alarms |= {n.window.index for n in outcome.notifications if n.status == "firing"}
    outcome = engine.finish()
    alarms |= {n.window.index for n in outcome.notifications if n.status == "firing"}
    return alarms


# -- river's ADWIN, per window --------------------------------------------------------


def adwin(windows: list[Window], scenario: str) -> set[int]:
    from river import drift

    make: Any = drift.ADWIN  # river is untyped
    signals = {name: make() for name in [*windows[0].features, "errors", "latency"]}
    alarms = set()
    for w, win in enumerate(windows):
        columns = {k: v for k, v in win.features.items() if v.dtype.kind == "f"}
        columns["errors"] = (win.prediction != win.label).astype(float)
        columns["latency"] = win.latency
        for name, values in columns.items():
            detector = signals.get(name)
            if detector is None:
                continue
            for value in values.tolist():
                detector.update(value)
                if detector.drift_detected:
                    alarms.add(w)
    return alarms


# -- Evidently's DataDriftPreset ------------------------------------------------------


def evidently_dataset(windows: list[Window], scenario: str) -> set[int] | None:
    """Windows where the preset's dataset-drift verdict (half the columns) is drift."""
    return _evidently(windows, lambda value: value["share"] >= 0.5)


def evidently_any(windows: list[Window], scenario: str) -> set[int] | None:
    """Windows where the preset finds any column drifted (how it is often alerted on)."""
    return _evidently(windows, lambda value: value["count"] >= 1)


def _evidently(
    windows: list[Window], drifted: Callable[[dict[str, float]], bool]
) -> set[int] | None:
    try:
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except ImportError:
        return None

    def frame(win: Window) -> pd.DataFrame:
        return pd.DataFrame({**win.features, "prediction": win.prediction})

    reference = frame(windows[0])
    alarms = set()
    for w, win in enumerate(windows[1:], start=1):
        current = frame(win)
        columns = [c for c in reference.columns if c in current.columns]
        result = Report([DataDriftPreset()]).run(current[columns], reference[columns])
        for metric in result.dict()["metrics"]:
            if metric["metric_name"].startswith("DriftedColumnsCount") and drifted(metric["value"]):
                alarms.add(w)
    return alarms


# -- the table ------------------------------------------------------------------------

SCENARIOS = [
    "covariate shift",
    "label shift",
    "concept drift",
    "degraded slice",
    "latency spike",
    "schema change",
]
Tool = Callable[[list[Window], str], "set[int] | None"]


def delay(alarms: set[int] | None) -> str:
    if alarms is None:
        return "n/a"
    after = sorted(w for w in alarms if w >= CHANGE)
    return str(after[0] - CHANGE) if after else "missed"


def main() -> None:
    tools: dict[str, Tool] = {
        "streamwatch": streamwatch,
        "Evidently dataset": evidently_dataset,
        "Evidently any col": evidently_any,
        "river ADWIN": adwin,
    }
    started = time.perf_counter()
    print(
        f"detection delay in windows after the change (0 = the window it starts); "
        f"{PER_WINDOW:,} events per window"
    )
    print(f"{'scenario':<18}" + "".join(f"{name:>18}" for name in tools))
    for seed, scenario in enumerate(SCENARIOS):
        windows = stream(scenario, seed, WINDOWS)
        print(
            f"{scenario:<18}"
            + "".join(f"{delay(tool(windows, scenario)):>18}" for tool in tools.values())
        )
    null = stream("no change", 99, NULL_WINDOWS)
    row = []
    for tool in tools.values():
        alarms = tool(null, "no change")
        row.append(
            "n/a" if alarms is None else f"{len(alarms - {0}) * 1000 / (NULL_WINDOWS - 1):.0f}"
        )
    print(f"{'false alarms/1000':<18}" + "".join(f"{cell:>18}" for cell in row))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
