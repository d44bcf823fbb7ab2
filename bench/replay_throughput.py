"""Replay throughput: streamwatch end to end, merely parsing the same lines, and the floor.

One model with 20 numeric and 5 categorical features (the shape of BENCHMARKS.md),
200,000 events in 20 windows of 10,000, fed in batches of ``POLL_RECORDS`` as a source
hands them over. Three ways over the same lines, in one process, interleaved round by
round (A, B, C, A, B, C, ...):

- streamwatch end to end: the engine with every detector on;
- the baseline, the least any Python consumer does: ``json.loads`` of every line;
- the floor: streamwatch's columnar decoder alone (``decode_batch`` with one ``Reader``
  for the whole stream, as the engine has), nothing else.

Prints the median wall time and CPU time (``time.process_time``, all threads) of each
and their ratios. Arrow's JSON reader runs on a thread pool, so the wall-time ratio
counts every core and the CPU-time ratio is the single-core comparison.

    make bench        (or: .venv/bin/python bench/replay_throughput.py [events])
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry

from streamwatch.config import Settings, WindowSettings
from streamwatch.events import Polled, decode_batch
from streamwatch.events.reader import Reader
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import POLL_RECORDS, Engine

ROUNDS = 3


def stream(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    numeric = rng.normal(0.0, 1.0, (n, 20)).round(4)
    categorical = rng.integers(0, 8, (n, 5))
    score = rng.uniform(0, 1, n).round(4)
    return [
        msgspec.json.encode(
            {
                "event_id": f"e{i}",
                "model_id": "bench",
                "timestamp": 1_795_305_600_000 + i * 30,  # 10,000 events per 5 minutes
                "features": {
                    **{f"x{j}": float(numeric[i, j]) for j in range(20)},
                    **{f"c{j}": f"cat{categorical[i, j]}" for j in range(5)},
                },
                "score": float(score[i]),
                "prediction": int(score[i] > 0.5),
            }
        )
        for i in range(n)
    ]


def batches(lines: list[bytes]) -> list[Polled]:
    """The lines as a source hands them over: ``POLL_RECORDS`` at a time, one partition."""
    spans = [(k, min(k + POLL_RECORDS, len(lines))) for k in range(0, len(lines), POLL_RECORDS)]
    return [Polled.of_runs([("bench", 0, lines[k:end], range(k, end))]) for k, end in spans]


def streamwatch(lines: list[bytes]) -> None:
    settings = Settings(window=WindowSettings(size="5m", allowed_lateness=0.0), sinks={})
    engine = Engine(settings, [], Metrics(CollectorRegistry()))
    for polled in batches(lines):
        engine.process(polled)
    engine.finish()
    assert engine.metrics.total("streamwatch_windows_closed") == len(lines) // 10_000


def stdlib_json(lines: list[bytes]) -> None:
    for raw in lines:
        json.loads(raw)


def decoder_alone(lines: list[bytes]) -> None:
    reader = Reader()  # one for the stream, as the engine keeps: it learns the events' shape
    for polled in batches(lines):
        decoded = decode_batch(polled, max_bytes=1 << 20, reader=reader)
        assert not decoded.bad


WAYS: dict[str, Callable[[list[bytes]], None]] = {
    "streamwatch end to end": streamwatch,
    "baseline: json.loads only": stdlib_json,
    "floor: columnar decoder alone": decoder_alone,
}


def measure(lines: list[bytes]) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each way, over ``ROUNDS`` interleaved rounds."""
    for run in WAYS.values():
        run(lines[:10_000])  # warm up: imports, Arrow's thread pool
    wall: dict[str, list[float]] = {name: [] for name in WAYS}
    cpu: dict[str, list[float]] = {name: [] for name in WAYS}
    for _ in range(ROUNDS):
        for name, run in WAYS.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            run(lines)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in WAYS}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    assert n % 10_000 == 0, "whole windows of 10,000 events"
    lines = stream(n)
    size = sum(map(len, lines)) / n
    medians = measure(lines)
    print(f"replay throughput, {n:,} events of {size:.0f} bytes, 20 numeric + 5 categorical")
    print(f"batches of {POLL_RECORDS:,}; medians of {ROUNDS} interleaved rounds")
    print(f"{'':<32}{'wall s':>8}{'events/s':>11}{'CPU s':>8}{'events/CPU s':>14}")
    for name, (wall, cpu) in medians.items():
        print(f"{name:<32}{wall:>8.3f}{n / wall:>11,.0f}{cpu:>8.3f}{n / cpu:>14,.0f}")
    ours, base, floor = (medians[name] for name in WAYS)
    print(f"ratio streamwatch / json.loads, rate:         {base[0] / ours[0]:.2f}")
    print(f"ratio streamwatch / decoder alone, rate:      {floor[0] / ours[0]:.2f}")
    print(f"ratio streamwatch / json.loads, rate per CPU: {base[1] / ours[1]:.2f}")
    print(f"ratio streamwatch / decoder alone, per CPU:   {floor[1] / ours[1]:.2f}")


if __name__ == "__main__":
    main()
