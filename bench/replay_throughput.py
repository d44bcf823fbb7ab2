"""Replay throughput: streamwatch end to end against merely parsing the same lines.

One model with 20 numeric and 5 categorical features (the shape of BENCHMARKS.md),
200,000 events in 20 windows of 10,000. The baseline is the least any Python consumer
does: ``json.loads`` of every line. Prints medians of three runs and their ratio.

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
from streamwatch.events import Message, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import POLL_RECORDS, Engine


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


def streamwatch(lines: list[bytes]) -> None:
    settings = Settings(window=WindowSettings(size="5m", allowed_lateness=0.0), sinks={})
    engine = Engine(settings, [], Metrics(CollectorRegistry()))
    for k in range(0, len(lines), POLL_RECORDS):
        batch = lines[k : k + POLL_RECORDS]
        engine.process([Message(raw, Origin("bench", 0, k + i)) for i, raw in enumerate(batch)])
    engine.finish()
    assert engine.metrics.total("streamwatch_windows_closed") == len(lines) // 10_000


def stdlib_json(lines: list[bytes]) -> None:
    for raw in lines:
        json.loads(raw)


def median_seconds(run: Callable[[list[bytes]], None], lines: list[bytes]) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        run(lines)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    lines = stream(n)
    size = sum(map(len, lines)) / n
    ours = median_seconds(streamwatch, lines)
    base = median_seconds(stdlib_json, lines)
    print(f"replay throughput, {n:,} events of {size:.0f} bytes, 20 numeric + 5 categorical")
    print(f"{'':<34}{'seconds':>10}{'events/s':>12}")
    print(f"{'streamwatch end to end':<34}{ours:>10.3f}{n / ours:>12,.0f}")
    print(f"{'baseline: json.loads only':<34}{base:>10.3f}{n / base:>12,.0f}")
    print(f"ratio (streamwatch rate / baseline rate): {base / ours:.2f}")


if __name__ == "__main__":
    main()
