"""Backfill: ``streamwatch backfill`` on a local Dask cluster of 1 and of 2 worker
processes against a single in-process replay of the same day files, for 1, 2 and 4 days.

Generates (seeded, in a temporary directory) a pinned reference day, then 4 days of
logged predictions joined with their labels (tests/scenarios/streams.py, 20 to 400
events a ten-minute window, about 21,000 rows a day; a shift of 1 sd from the second
day on, so that alerts fire), generated as one span and split by event time into one
Parquet file a day in hive layout (``day=NN/part.parquet``). For D days the first D
day files are read by each way:

- replay: ``Engine.run`` over the D files as one source, in process;
- ``backfill.run`` with ``workers=1`` and ``workers=2``: wall time including the
  cluster's start and close;
- in process, backfill's stages one after the other, to say what can go parallel: the
  files' parts (``backfill.part``), the windows judged apart (on workers in a cluster),
  and the driver's sequential rest (labelled windows in order, the alert path).

Every way's windows (each window's statistics digest) and notification ids must equal
the replay's (as tests/unit/scaleout/test_backfill.py compares them); the script exits 1
if not. Each figure is of one run, so noisy: compare the ratios, measured in the same
run. The machine has 2 cores, which the driver, the scheduler and the workers share.

    make bench      (or: .venv/bin/python bench/backfill.py)
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch.config import Settings
from streamwatch.daemon import build_engine, pinned
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.monitor import ClosedWindow
from streamwatch.scaleout import backfill
from streamwatch.sources.tables import open_files
from tests.scenarios.streams import CHANGE, DAY, START, WINDOW, Change, Stream, messages
from tests.tables import flatten, with_labels, write
from tests.unit.scaleout.test_backfill import results
from tests.unit.scaleout.test_backfill import settings as settings_of

DAYS = (1, 2, 4)
STREAM = replace(Stream(seed=41, trough=20, peak=400), change=Change("shift", 1.0, CHANGE))
WORKERS = (1, 2)


def generate(directory: Path, days: int) -> tuple[list[Path], list[int], Path]:
    """The reference day, then ``days`` days of logs as one Parquet file a day; the
    day files and their rows, and a warm-up file of the first two hours. One span is
    generated and split by event time."""
    write(flatten(with_labels(messages(STREAM, 0, DAY))), directory / "reference.parquet")
    table = flatten(with_labels(messages(STREAM, DAY, DAY + days * DAY)))
    files, rows = [], []
    for k in range(days):
        first = (START + (k + 1) * DAY * WINDOW) * 1000
        last = first + DAY * WINDOW * 1000
        ts = table["timestamp"]
        day = table.filter(pc.and_(pc.greater_equal(ts, first), pc.less(ts, last)))
        files.append(write(day, directory / "logs" / f"day={k + 1:02d}" / "part.parquet"))
        rows.append(day.num_rows)
    assert sum(rows) == table.num_rows, "every row in a day"
    start = (START + DAY * WINDOW) * 1000
    hours = table.filter(pc.less(table["timestamp"], start + 12 * WINDOW * 1000))
    return files, rows, write(hours, directory / "warm.parquet")


def replay(settings: Settings, files: list[Path]) -> tuple[float, dict[str, Any]]:
    engine = build_engine(settings, [], Metrics(CollectorRegistry()))
    started = time.perf_counter()
    produced = engine.run(open_files(files, settings.table), None)
    return time.perf_counter() - started, results(produced)


def on_cluster(settings: Settings, files: list[Path], workers: int) -> tuple[float, dict[str, Any]]:
    engine = build_engine(settings, [], Metrics(CollectorRegistry()))
    started = time.perf_counter()
    produced = backfill.run(engine, settings, pinned(settings), files, workers=workers)
    return time.perf_counter() - started, results(produced)


def stages(settings: Settings, files: list[Path]) -> dict[str, float]:
    """Backfill's stages in process, one after the other: seconds of each."""
    reference = pinned(settings)
    started = time.perf_counter()
    done = [backfill.part(settings, f, k, reference) for k, f in enumerate(files)]
    parts = time.perf_counter() - started
    local = backfill.partial_judge(settings, reference, len(files))
    judging = [0.0]

    def judged(tasks: list[tuple[str, list[bytes]]]) -> list[list[ClosedWindow]]:
        begun = time.perf_counter()
        windows = local(tasks)
        judging[0] += time.perf_counter() - begun
        return windows

    engine = build_engine(settings, [], Metrics(CollectorRegistry()))
    started = time.perf_counter()
    backfill.account(engine, done)
    engine.conclude(backfill.batches(backfill.evaluate(settings, reference, done, judged)))
    rest = time.perf_counter() - started - judging[0]
    return {"parts": parts, "judged": judging[0], "driver": rest}


def main() -> int:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        begun = time.perf_counter()
        files, rows, warm = generate(directory, max(DAYS))
        settings = settings_of(directory)
        print(
            f"Backfill: {sum(rows) // len(rows):,} rows a day (predictions with their labels), "
            f"one Parquet file a day; generated in {time.perf_counter() - begun:.1f} s; 2 cores"
        )
        replay(settings, [warm])  # the driver's imports and first fits, before timing
        print(f"\n{'days':>4} {'rows':>8}  {'way':<10} {'wall s':>7} {'rows/s':>8} {'x replay':>8}")
        equal, walls = True, {}
        for days in DAYS:
            chosen, n = files[:days], sum(rows[:days])
            seconds, expected = replay(settings, chosen)
            walls[days, "replay"] = seconds
            print(
                f"{days:>4} {n:>8,}  {'replay':<10} {seconds:>7.2f} {n / seconds:>8,.0f} {1:>8.2f}"
            )
            for workers in WORKERS:
                wall, got = on_cluster(settings, chosen, workers)
                equal &= got == expected
                way = f"{workers} worker" + "s" * (workers > 1)
                walls[days, way] = wall
                ratio = seconds / wall
                print(f"{days:>4} {n:>8,}  {way:<10} {wall:>7.2f} {n / wall:>8,.0f} {ratio:>8.2f}")
        split = stages(settings, files)
        total = sum(split.values())
        print(
            f"\nin process, {max(DAYS)} days: parts {split['parts']:.2f} s, windows judged apart "
            f"{split['judged']:.2f} s, the driver's sequential rest {split['driver']:.2f} s"
        )
        span = DAYS[-1] - DAYS[0]
        for way in ("replay", "1 worker", "2 workers"):
            slope = (walls[DAYS[-1], way] - walls[DAYS[0], way]) / span
            print(f"per day added, {way}: {slope:.2f} s")
        print(
            f"the parts and the judged windows go parallel; the driver's rest does not: "
            f"{split['driver'] / total:.0%} of the work, so at most {total / split['driver']:.1f}x "
            "the in-process stages however many workers"
        )
        print(f"results equal to the replay's (digests, notification ids), every way: {equal}")
        return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
