"""Detection quality on issue 15's realistic scenarios: false alerts per 1,000 null
windows, per detector, and detection delays per change scenario, side by side with
Evidently and NannyML on the same windows.

The streams are the scenario suite's (``tests/scenarios``): a binary classifier's
events with a daily cycle (about 200 to 6,000 events per 10-minute window), heavy
tails, ties, zero inflation, point masses, 300 Zipf categories, 20% missing values,
mixed types, and a label for every event some minutes later. Each stream starts with a
reference day (144 windows); the null stream then runs 156 more windows, and each change
starts at window 146 (12:20 on the second day) and runs 6 windows.

- streamwatch: the real engine, every detector on, its alert policy, durable outbox
  and a file sink (the runner of the scenario tests); a delay counts from the change
  to the first firing notification of the detector that should catch it.
- Evidently 0.7.23, ``DataDriftPreset`` with its defaults, on the features, score and
  prediction, each window against 20,000 events sampled from the reference day (the
  whole day, 294,000 events, takes it about 10 s a window): its dataset verdict (half
  the columns drifted) and "any column drifted".
- NannyML 0.13.1 univariate drift with its defaults (Jensen-Shannon, its thresholds),
  fitted on the reference day chunked by the same windows, on the same columns: an
  alarm when any column alerts.
- NannyML 0.13.1 realized performance (accuracy), fitted per segment on the reference
  day (all traffic, each region, each gender: NannyML has no segments of its own, so
  one calculator per segment): an alarm when any segment alerts.

Evidently and NannyML read text in a numeric column as missing (``pd.to_numeric``), and
see neither labels (drift) nor the operational error flag. They live only in
``.venv-bench`` (``make bench`` builds it), never in the runtime dependencies.

    make bench      (or: .venv-bench/bin/python bench/detection.py)
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._baselines import markdown, nannyml
from tests.scenarios import (
    AFTER_CHANGE,
    CHANGE,
    DAY,
    DETECTORS,
    SLICE,
    START,
    WIDE_NULL,
    WINDOW,
    Run,
    Scenario,
    Window,
    generate,
    index,
    run_all,
)
from tests.scenarios import SCENARIOS as SUITE

# The suite's scenarios but its second null stream, whose reference day alone would
# cost Evidently half an hour; the null tests run it.
SCENARIOS = {name: s for name, s in SUITE.items() if name != WIDE_NULL}
REFERENCE_SAMPLE = 20_000
CATEGORICAL = ("merchant", "channel", "device", "is_new")
Alarms = set[int]  # window indexes in which a tool alarmed


def analysed(scenario: Scenario) -> range:
    """The windows the tools judge: after the reference day (from the change on)."""
    return range(DAY if scenario.stream.change is None else CHANGE, scenario.windows)


# -- streamwatch ----------------------------------------------------------------------


def streamwatch(directory: Path) -> dict[str, Run]:
    started = time.perf_counter()
    runs, _ = run_all(directory, SCENARIOS)
    seconds = time.perf_counter() - started
    print(f"streamwatch: {len(runs)} scenarios, {seconds:.0f} s in 2 processes", file=sys.stderr)
    return runs


def firing_windows(run: Run) -> Alarms:
    return {index(a) for a in run.alerts if a["status"] == "firing" and not a["repeated"]}


# -- the baselines' frames ------------------------------------------------------------


def frame(windows: Sequence[Window]) -> Any:
    """Windows as one pandas frame, as a pipeline would load them: each event stamped
    with its window's start (so that NannyML's period chunks are our windows)."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for name in windows[0].features:
        values = np.concatenate([w.features[name] for w in windows])
        if name in CATEGORICAL:
            columns[name] = pd.Series(values.astype(str))
        else:
            columns[name] = pd.to_numeric(pd.Series(values), errors="coerce")
    columns["score"] = np.concatenate([w.score for w in windows])
    columns["prediction"] = np.concatenate([w.prediction for w in windows])
    columns["label"] = np.concatenate([w.label for w in windows])
    columns["region"] = np.concatenate([w.region for w in windows]).astype(str)
    columns["gender"] = np.concatenate([w.gender for w in windows]).astype(str)
    starts = np.concatenate([np.full(w.n, START + w.index * WINDOW) for w in windows])
    columns["timestamp"] = pd.to_datetime(starts, unit="s")
    columns["window"] = np.concatenate([np.full(w.n, w.index) for w in windows])
    return pd.DataFrame(columns)


def inputs(data: Any) -> Any:
    """The columns a drift tool is given: features, score and prediction."""
    return data[[*data.columns[: data.columns.get_loc("score")], "score", "prediction"]]


# -- Evidently ------------------------------------------------------------------------

_worker: dict[str, Any] = {}  # what each worker process holds: the reference sample


def _evidently_worker(reference: Any) -> None:
    _worker["reference"] = reference


def _evidently_window(current: Any) -> tuple[bool, bool]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    result = Report([DataDriftPreset()]).run(current, _worker["reference"]).dict()
    for metric in result["metrics"]:
        if metric["metric_name"].startswith("DriftedColumnsCount"):
            value = metric["value"]
            return bool(value["share"] >= 0.5), bool(value["count"] >= 1)
    raise RuntimeError("DataDriftPreset reported no DriftedColumnsCount")


def evidently(reference: Any, frames: dict[str, Any]) -> dict[str, tuple[Alarms, Alarms]]:
    """Per scenario: windows of a dataset verdict, and of any column drifted. A window
    whose inputs are the same as one judged already (changes in labels alone) is not
    judged again."""
    import pandas as pd

    jobs: dict[int, Any] = {}
    keys: dict[tuple[str, int], int] = {}
    for name, data in frames.items():
        for w, part in data.groupby("window"):
            current = inputs(part).reset_index(drop=True)
            key = int(pd.util.hash_pandas_object(current, index=False).sum())
            jobs.setdefault(key, current)
            keys[name, int(w)] = key
    with ProcessPoolExecutor(
        2, mp_context=get_context("spawn"), initializer=_evidently_worker, initargs=(reference,)
    ) as pool:
        verdicts = dict(zip(jobs, pool.map(_evidently_window, jobs.values()), strict=True))
    found: dict[str, tuple[Alarms, Alarms]] = {name: (set(), set()) for name in frames}
    for (name, w), key in keys.items():
        dataset, any_column = verdicts[key]
        if dataset:
            found[name][0].add(w)
        if any_column:
            found[name][1].add(w)
    return found


# -- NannyML --------------------------------------------------------------------------


def _alarms(result: Any, metric: str | None = None) -> Alarms:
    table = result.filter(period="analysis").to_df()
    alert = [c for c in table.columns if c[-1] == "alert" and (metric is None or metric in c)]
    starts = table[next(c for c in table.columns if c[-1] == "start_date")]
    hit = table[alert].any(axis=1)
    return {round((s.timestamp() - START) / WINDOW) for s, h in zip(starts, hit, strict=True) if h}


def nannyml_drift(reference: Any, frames: dict[str, Any]) -> dict[str, Alarms]:
    nml = nannyml()
    columns = list(inputs(reference).columns)
    calculator = nml.UnivariateDriftCalculator(
        column_names=columns, timestamp_column_name="timestamp", chunk_period="10min"
    )
    calculator.fit(reference)
    return {name: _alarms(calculator.calculate(data)) for name, data in frames.items()}


def segments(data: Any) -> dict[str, Any]:
    parts = {"all": data}
    for dimension in ("region", "gender"):
        for value in sorted(set(data[dimension])):
            parts[f"{dimension}={value}"] = data[data[dimension] == value]
    return parts


def nannyml_performance(
    references: dict[str, Any], frames: dict[str, Any], stream_of: Callable[[str], str]
) -> dict[str, Alarms]:
    """Accuracy per segment, each segment's calculator fitted on its stream's reference
    day; an alarm where any segment alerts."""
    nml = nannyml()
    calculators: dict[tuple[str, str], Any] = {}
    for stream, reference in references.items():
        for segment, part in segments(reference).items():
            calculator = nml.PerformanceCalculator(
                metrics=["accuracy"],
                y_true="label",
                y_pred="prediction",
                y_pred_proba="score",
                problem_type="classification_binary",
                timestamp_column_name="timestamp",
                chunk_period="10min",
            )
            calculators[stream, segment] = calculator.fit(part)
    found: dict[str, Alarms] = {}
    for name, data in frames.items():
        found[name] = set()
        for segment, part in segments(data).items():
            result = calculators[stream_of(name), segment].calculate(part)
            found[name] |= _alarms(result, "accuracy")
    return found


# -- the tables -----------------------------------------------------------------------


def delay(alarms: Alarms | None) -> str:
    if alarms is None:
        return "n/a"
    after = sorted(w for w in alarms if w >= CHANGE)
    return str(after[0] - CHANGE) if after else "missed"


def per_thousand(alarms: Alarms, windows: range) -> str:
    return f"{len(alarms & set(windows)) * 1000 / len(windows):.0f}"


def main() -> None:
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="streamwatch-detection-"))
    try:
        runs = streamwatch(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    null, null_windows = runs["null"], analysed(SCENARIOS["null"])
    detectors = [*DETECTORS, *sorted({a["labels"]["detector"] for a in null.alerts} - {*DETECTORS})]
    rows = []
    for detector in detectors:
        fired = [
            index(a)
            for a in null.alerts
            if a["labels"]["detector"] == detector and a["status"] == "firing" and not a["repeated"]
        ]
        after = [w for w in fired if w >= DAY]
        rate = f"{len(after) * 1000 / len(null_windows):.0f}"
        rows.append([detector, rate, str(len(after)), str(len(fired) - len(after))])
    print(
        f"streamwatch on the null stream, every detector on: firing notifications over its "
        f"{len(null_windows)} windows after the reference day, and during that day\n"
    )
    header = ["detector", "per 1,000 windows", "notifications", "in the reference day"]
    print(markdown(header, rows))
    print()

    baselines = baseline_alarms(runs)
    tools = {"streamwatch": {n: _expected_windows(r) for n, r in runs.items()}, **baselines}
    rows = []
    for name, scenario in SCENARIOS.items():
        if scenario.stream.change is not None:
            caught = " or ".join(scenario.expect) + (
                f" ({scenario.subject})" if scenario.subject else ""
            )
            rows.append([name, caught, *(delay(found.get(name)) for found in tools.values())])
    # The chronic stream's inputs are the null stream's: drift tools judge it alike.
    chronic = runs["chronic slice gap"].firing()["slice_performance", f"region={SLICE}"]
    rows.append(
        [
            "chronic slice gap, 7 points (alerts)",
            f"slice_performance (region={SLICE})",
            str(chronic),
            *(
                f"{len(found['chronic slice gap'])} windows"
                if "chronic slice gap" in found
                else "as null"
                for found in baselines.values()
            ),
        ]
    )
    rows.append(
        [
            "false alarms per 1,000 null windows",
            "any detector",
            per_thousand(firing_windows(null), null_windows),
            *(per_thousand(found["null"], null_windows) for found in baselines.values()),
        ]
    )
    print(
        "detection delay in windows after the change (0: the window it starts in; missed: "
        f"not within {AFTER_CHANGE} windows); false alarms: windows with any alarm\n"
    )
    print(markdown(["scenario", "streamwatch detector", *tools], rows, left=2))
    print(f"\n({time.perf_counter() - started:.0f} s)")


def _expected_windows(run: Run) -> Alarms:
    scenario = run.scenario
    return {
        index(a)
        for a in run.alerts
        if a["status"] == "firing"
        and a["labels"]["detector"] in scenario.expect
        and scenario.subject in (None, a["labels"]["subject"])
    }


def baseline_alarms(runs: dict[str, Run]) -> dict[str, dict[str, Alarms]]:
    """Evidently's and NannyML's alarms per scenario, on the same windows; none where
    they are not installed."""
    try:
        for module in ("evidently", "pandas"):
            importlib.import_module(module)
        nannyml()
    except ImportError:
        print("(Evidently and NannyML are not installed here: make bench)", file=sys.stderr)
        return {}
    started = time.perf_counter()
    references = {
        str(s.unchanged): frame([generate(s.unchanged, w) for w in range(DAY)])
        for s in {SCENARIOS[n].stream.unchanged for n in SCENARIOS}
    }
    base = references[str(SCENARIOS["null"].stream.unchanged)]
    frames = {
        name: frame([generate(s.stream, w) for w in analysed(s)]) for name, s in SCENARIOS.items()
    }
    drifts = {n: f for n, f in frames.items() if n != "chronic slice gap"}
    sample = inputs(base).sample(REFERENCE_SAMPLE, random_state=0).reset_index(drop=True)
    evident = evidently(sample, drifts)
    print(f"Evidently: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    drift = nannyml_drift(base, drifts)
    performance = nannyml_performance(
        references, frames, lambda name: str(SCENARIOS[name].stream.unchanged)
    )
    print(f"baselines: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return {
        "Evidently dataset": {n: v[0] for n, v in evident.items()},
        "Evidently, any column": {n: v[1] for n, v in evident.items()},
        "NannyML univariate": drift,
        "NannyML accuracy, per segment": performance,
    }


if __name__ == "__main__":
    main()
