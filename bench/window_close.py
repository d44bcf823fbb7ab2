"""Window close: all drift statistics of 25 features, streamwatch against Evidently and NannyML.

The target: closing a window of 100,000 events is at least 50x faster than Evidently's
DataDriftPreset and 10x faster than NannyML's univariate drift, on the same reference
and current data, in the same run.

Data (seeded numpy): 20 numeric features N(0, 1) and 5 categorical ones of 8 equally
likely categories ("cat0".."cat7"), as in replay_throughput.py; a reference of N events
(100,000; also 10,000) and two current sets of N events, each a table of its own:

- "drift": modest drift on three features: x0's mean +0.3 sd, x1's sd x1.3, 15% of c0
  moved to "cat0". streamwatch must flag these three features and only them.
- "mild": every numeric feature's mean +0.03 sd, too little to alarm on (none may be
  flagged). A KS statistic of 0.01 to 0.05 is where scipy's exact Kolmogorov
  distribution, behind streamwatch's KS p-value, is slowest.

- streamwatch: the events become columns through the real ``Schema`` (untimed:
  decoding is not window close; an event needs a score to be a prediction, so each
  carries one, and prediction drift is off: only the features are compared). The grid
  is fitted with ``ModelBinning.fit`` on the first ``grid_sample`` reference events, as
  a model does, and the reference is a ``DetectorSet`` of all reference events. BLAS
  runs on one thread, as in the engine. Two figures: "evaluate" is the window close
  proper, ``DetectorSet.evaluate`` of the window's state (streamwatch bins events into
  it as they arrive) against the reference: feature drift (KS, Wasserstein, PSI,
  Jensen-Shannon, chi-square; with data quality, which reads its counts) and
  out-of-distribution; "update + evaluate" also bins all N current events into a fresh
  window state first, 5,000 (one poll) at a time.
- Evidently 0.7.23: ``Report([DataDriftPreset()]).run(current, reference)`` on
  ``Dataset``s of the same data with an explicit ``DataDefinition`` (the DataFrames
  and Datasets are built untimed).
- NannyML 0.13.1: ``UnivariateDriftCalculator`` with its default methods
  (Jensen-Shannon), the whole current set one chunk. Timed twice: fit on the
  reference plus calculate on the current set, and calculate alone on a fitted
  calculator (the reference prepared once, like streamwatch's).

Evidently needs pandas < 3 and NannyML pulls ~2 GB of dependencies, so the baselines
live in the benchmark environment (.venv-bench, made by ``make bench``): this script,
run with .venv, writes the data once to a temporary .npz and runs itself with
``--baseline`` under .venv-bench/bin/python, which prints its medians as JSON. A
missing interpreter or library is reported and skipped. Telemetry of both libraries
is off (DO_NOT_TRACK, NML_DISABLE_USAGE_LOGGING).
Times are medians of three runs; ratios are a baseline's seconds over streamwatch's.

    make bench    (or: .venv/bin/python bench/window_close.py [events ...]
                   [--evidently-python PATH] [--nannyml-python PATH])
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
NUMERIC, CATEGORICAL, CATEGORIES = 20, 5, 8
NUMERIC_NAMES = [f"x{j}" for j in range(NUMERIC)]
CATEGORICAL_NAMES = [f"c{j}" for j in range(CATEGORICAL)]
SCENARIOS = {
    "drift": "x0 mean +0.3 sd, x1 sd x1.3, c0 15% moved to cat0",
    "mild": "every numeric feature's mean +0.03 sd",
}
FLAGGED = {"drift": {"x0", "x1", "c0"}, "mild": set[str]()}  # what streamwatch must flag
SIZES = (10_000, 100_000)
TARGET_SIZE = 100_000
POLL = 5000  # events per update: one poll of the engine (engine.POLL_RECORDS)
TARGETS = {"evidently": 50.0, "nannyml": 10.0}
NAMES = {"evidently": "Evidently", "nannyml": "NannyML"}
RUNS = 3
Data = dict[str, NDArray[Any]]  # ref_num, ref_cat, cur_num, cur_cat


# -- the data ---------------------------------------------------------------------------


def generate(n: int, seed: int) -> dict[str, Data]:
    """The reference and each scenario's current set: numeric floats, category codes."""
    rng = np.random.default_rng(seed)
    ref_num = rng.normal(0.0, 1.0, (n, NUMERIC)).round(4)
    ref_cat = rng.integers(0, CATEGORIES, (n, CATEGORICAL))
    drift_num = rng.normal(0.0, 1.0, (n, NUMERIC)).round(4)
    drift_num[:, 0] += 0.3
    drift_num[:, 1] *= 1.3
    drift_cat = rng.integers(0, CATEGORIES, (n, CATEGORICAL))
    drift_cat[rng.random(n) < 0.15, 0] = 0
    mild_num = (rng.normal(0.0, 1.0, (n, NUMERIC)) + 0.03).round(4)
    mild_cat = rng.integers(0, CATEGORIES, (n, CATEGORICAL))
    reference = {"ref_num": ref_num, "ref_cat": ref_cat}
    return {
        "drift": {**reference, "cur_num": drift_num, "cur_cat": drift_cat},
        "mild": {**reference, "cur_num": mild_num, "cur_cat": mild_cat},
    }


def median(run: Callable[[], object]) -> dict[str, Any]:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return {"median": statistics.median(times), "runs": times}


def labels(codes: NDArray[np.int64]) -> NDArray[np.object_]:
    names: NDArray[np.object_] = np.array([f"cat{k}" for k in range(CATEGORIES)], np.object_)
    return names[codes]


# -- streamwatch (run with .venv) -------------------------------------------------------


def streamwatch(data: Data, scenario: str) -> dict[str, Any]:
    """Medians of the window close (evaluate) and of binning plus close."""
    from streamwatch.batch import Batch, Schema
    from streamwatch.config import DetectorSettings, DriftSettings, OperationalSettings
    from streamwatch.detectors import DetectorSet, ModelBinning, Severity
    from streamwatch.events import Event
    from streamwatch.windows import WindowBounds

    names = NUMERIC_NAMES + CATEGORICAL_NAMES

    def batch(numeric: NDArray[np.float64], codes: NDArray[np.int64], start: int) -> Batch:
        columns = [*numeric.T.tolist(), *labels(codes).T.tolist()]
        events = [
            Event(
                event_id=start + i,
                model_id="bench",
                timestamp=1_795_305_600_000 + (start + i) * 30,
                features=dict(zip(names, row, strict=True)),
                score=0.5,
            )
            for i, row in enumerate(zip(*columns, strict=True))
        ]
        return Schema().build(events)

    n = len(data["ref_num"])
    reference_batch = batch(data["ref_num"], data["ref_cat"], 0)
    current_batch = batch(data["cur_num"], data["cur_cat"], n)
    polls = [current_batch.take(np.arange(lo, min(lo + POLL, n))) for lo in range(0, n, POLL)]
    settings = DetectorSettings(
        prediction_drift=DriftSettings(enabled=False),
        operational=OperationalSettings(enabled=False),
    )
    binning = ModelBinning(settings)
    binning.fit(reference_batch.take(np.arange(settings.grid_sample)))
    reference = DetectorSet(settings, binning)
    reference.update(reference_batch)
    bounds = WindowBounds(1, n * 0.03, 2 * n * 0.03)

    def update() -> DetectorSet:
        state = DetectorSet(settings, binning)
        for poll in polls:
            state.update(poll)
        return state

    # BLAS on one thread, as the engine runs it (threadpoolctl has no type information).
    threadpool_limits: Any = importlib.import_module("threadpoolctl").threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        window = update()
        findings = window.evaluate("bench", bounds, reference)
        evaluate = median(lambda: window.evaluate("bench", bounds, reference))
        both = median(lambda: update().evaluate("bench", bounds, reference))
    drift = [f for f in findings if f.detector == "feature_drift"]
    flagged = {f.subject for f in drift if f.severity is not Severity.OK}
    assert len(drift) == NUMERIC + CATEGORICAL, [f.subject for f in drift]
    assert flagged == FLAGGED[scenario], f"{scenario}: streamwatch flagged {sorted(flagged)}"
    alarms = [f"{f.detector}:{f.subject}" for f in findings if f.severity is not Severity.OK]
    return {"evaluate": evaluate, "update + evaluate": both, "alarms": sorted(alarms)}


# -- the baselines (each run by its own interpreter) ------------------------------------


def frames(data: Data) -> tuple[Any, Any]:
    import pandas as pd

    def frame(numeric: NDArray[np.float64], codes: NDArray[np.int64]) -> Any:
        categories = labels(codes)
        return pd.DataFrame(
            {
                **{name: numeric[:, j] for j, name in enumerate(NUMERIC_NAMES)},
                **{name: categories[:, j] for j, name in enumerate(CATEGORICAL_NAMES)},
            }
        )

    return frame(data["ref_num"], data["ref_cat"]), frame(data["cur_num"], data["cur_cat"])


def evidently(data: Data) -> dict[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference_frame, current_frame = frames(data)
    definition = DataDefinition(
        numerical_columns=NUMERIC_NAMES, categorical_columns=CATEGORICAL_NAMES
    )
    reference = Dataset.from_pandas(reference_frame, data_definition=definition)
    current = Dataset.from_pandas(current_frame, data_definition=definition)
    snapshots: list[Any] = []

    def run() -> None:
        snapshots[:] = [Report([DataDriftPreset()]).run(current, reference)]

    timed = median(run)
    counts = [
        int(m["value"]["count"])
        for m in snapshots[0].dict()["metrics"]
        if m["metric_name"].startswith("DriftedColumnsCount")
    ]
    return {"report.run": timed, "drifted columns": counts[0] if counts else None}


def nannyml(data: Data) -> dict[str, Any]:
    # Imported by name: mypy, run from .venv, never sees NannyML (nor needs its stubs).
    nml: Any = importlib.import_module("nannyml")
    reference, current = frames(data)

    def calculator() -> Any:
        columns = NUMERIC_NAMES + CATEGORICAL_NAMES
        return nml.UnivariateDriftCalculator(column_names=columns, chunk_number=1)

    fitted = calculator().fit(reference)
    results: list[Any] = []

    def both() -> None:
        results[:] = [calculator().fit(reference).calculate(current)]

    timed = {
        "fit + calculate": median(both),
        "calculate": median(lambda: fitted.calculate(current)),
    }
    # Its alerts say nothing here: one reference chunk gives a degenerate threshold.
    table = results[0].filter(period="analysis").to_df()
    values = {c[0]: float(table[c].iloc[0]) for c in table.columns if c[-1] == "value"}
    top = sorted(values, key=lambda k: -values[k])[:4]
    return {**timed, "largest Jensen-Shannon": ", ".join(f"{k} {values[k]:.3f}" for k in top)}


BASELINES: dict[str, Callable[[Data], dict[str, Any]]] = {
    "evidently": evidently,
    "nannyml": nannyml,
}


def baseline(tool: str, path: str, sizes: list[int]) -> None:
    """Worker: time one baseline on every scenario and size; JSON on the last line."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        importlib.import_module(tool)
        out: dict[str, Any] = {"version": version(tool), "results": {}}
    except (ImportError, PackageNotFoundError) as exc:
        print(json.dumps({"skipped": f"{type(exc).__name__}: {exc}"}))
        return
    with np.load(path) as stored:
        for scenario in SCENARIOS:
            for n in sizes:
                data = {k: stored[f"{scenario}_{k}_{n}"] for k in ("cur_num", "cur_cat")}
                data |= {k: stored[f"{k}_{n}"] for k in ("ref_num", "ref_cat")}
                out["results"][f"{scenario} {n}"] = BASELINES[tool](data)
    print(json.dumps(out))


def run_baseline(tool: str, pythons: list[Path], path: str, sizes: list[int]) -> dict[str, Any]:
    """Run the worker under the first of ``pythons`` that has the library."""
    env = {**os.environ, "DO_NOT_TRACK": "1", "NML_DISABLE_USAGE_LOGGING": "1"}
    reasons = []
    for python in pythons:
        if not python.exists():
            reasons.append(f"no {python}")
            continue
        command = [str(python), __file__, "--baseline", tool, path, *map(str, sizes)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            reasons.append(f"{python} exited {done.returncode}: {tail[0]}")
            continue
        result: dict[str, Any] = json.loads(lines[-1])
        if "skipped" in result:
            reasons.append(f"{python}: {result['skipped']}")
            continue
        return result
    return {"skipped": "; ".join(reasons)}


# -- the table --------------------------------------------------------------------------


def table(
    scenario: str, sizes: list[int], ours: dict[int, dict[str, Any]], theirs: dict[str, Any]
) -> None:
    n = TARGET_SIZE if TARGET_SIZE in sizes else sizes[-1]
    print(f"\n{scenario}: {SCENARIOS[scenario]}")
    header = "".join(f"{f'{m:,}':>10}" for m in sizes)
    print(f"{'tool':<18}{'what':<18}{header}{'/evaluate':>11}{'/upd+eval':>11}  target")
    evaluate = ours[n]["evaluate"]["median"]
    both = ours[n]["update + evaluate"]["median"]
    for what in ("evaluate", "update + evaluate"):
        cells = "".join(f"{ours[m][what]['median']:>10.4f}" for m in sizes)
        print(f"{'streamwatch':<18}{what:<18}{cells}")
    notes = [f"streamwatch alarms: {', '.join(ours[n]['alarms']) or 'none'}"]
    for tool, result in theirs.items():
        if "skipped" in result:
            continue
        first = result["results"][f"{scenario} {sizes[0]}"]
        for what in (k for k, v in first.items() if isinstance(v, dict)):
            medians = {m: result["results"][f"{scenario} {m}"][what]["median"] for m in sizes}
            cells = "".join(f"{medians[m]:>10.4f}" for m in sizes)
            a, b = medians[n] / evaluate, medians[n] / both
            target = TARGETS[tool]
            verdict = "met" if b >= target else "by evaluate only" if a >= target else "NOT met"
            name = f"{NAMES[tool]} {result['version']}"
            print(f"{name:<18}{what:<18}{cells}{a:>10.1f}x{b:>10.1f}x  {target:g}x: {verdict}")
        found = result["results"][f"{scenario} {n}"]
        notes += [f"{NAMES[tool]} {k}: {v}" for k, v in found.items() if not isinstance(v, dict)]
    print(f"at {n:,}: " + "; ".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description="streamwatch's window close against baselines")
    parser.add_argument("events", nargs="*", type=int, default=list(SIZES))
    parser.add_argument("--evidently-python", type=Path)
    parser.add_argument("--nannyml-python", type=Path)
    parser.add_argument("--baseline", nargs=2, metavar=("TOOL", "NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = sorted(args.events)
    if args.baseline:
        baseline(args.baseline[0], args.baseline[1], sizes)
        return

    started = time.perf_counter()
    data = {n: generate(n, seed=n) for n in sizes}
    ours = {s: {n: streamwatch(data[n][s], s) for n in sizes} for s in SCENARIOS}
    pythons = {
        "evidently": [args.evidently_python or ROOT / ".venv-bench/bin/python"],
        "nannyml": [args.nannyml_python or ROOT / ".venv-bench/bin/python"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "window_close.npz")
        arrays: dict[str, Any] = {
            f"{k}_{n}": data[n]["drift"][k] for n in sizes for k in ("ref_num", "ref_cat")
        }
        for scenario in SCENARIOS:
            for n in sizes:
                for k in ("cur_num", "cur_cat"):
                    arrays[f"{scenario}_{k}_{n}"] = data[n][scenario][k]
        np.savez(path, **arrays)
        theirs = {tool: run_baseline(tool, pythons[tool], path, sizes) for tool in BASELINES}

    print(
        f"window close: {NUMERIC} numeric + {CATEGORICAL} categorical features, a reference "
        f"and a current set of N events; seconds, medians of {RUNS}"
    )
    for scenario in SCENARIOS:
        table(scenario, sizes, ours[scenario], theirs)
    for tool, result in theirs.items():
        if "skipped" in result:
            print(f"{NAMES[tool]} skipped: {result['skipped']}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
