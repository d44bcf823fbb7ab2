"""Alert latency under load: from the event whose timestamp closes a window to the
webhook request arriving at a local receiver. A notification is held until the checkpoint
that covers its window is written (delivered only once durable), so the target is p99
under one ``STATE__CHECKPOINT_INTERVAL`` (10 s by default; ``--set
state__checkpoint_interval=1s`` to try another) plus 1 s, at 20,000 events/s.

Starts a broker (or uses SW_TEST_BOOTSTRAP), an HTTP receiver on 127.0.0.1
that notes the arrival time of every POST, and ``streamwatch run`` (the entry point)
with a webhook sink to it, event-time windows of a few seconds with no allowed
lateness, and a repeat interval of 1 ms, so that every window that still drifts is
sent again (alerts.py only notifies on a change or a repeat). This process then
produces events stamped with the wall clock at a steady rate, in small batches: the
first window (aligned to the epoch) holds the reference distribution, every later one
a large shift of it (features, score and predicted class), which the detectors flag in
each window. A window [start, end) closes when the first event stamped at or after
``end`` arrives: its send time is noted, and the latency of the window is the arrival
of the webhook whose alerts are of that window less that send time. The daemon's
"window closed" log lines split it into the part up to the window's evaluation
(Kafka, consumer, engine) and the part after (alert policy, outbox, HTTP).

    make bench   (or: .venv/bin/python bench/alert_latency.py [--rate N] [--seconds S]
                  [--window W] [--set kafka__client=confluent ...])
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np
import requests
from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._daemon import Daemon, cpu_pressure, create_topic, daemon_settings, kafka
from streamwatch.config import StateSettings, parse_duration
from tests.integration.receivers import Received, Reply, receiving

TARGET = 1.0  # seconds, p99, beyond the checkpoint interval
POOL = 4096  # distinct event bodies per distribution
CHUNK = 500  # most events sent in one go when the producer is behind
DRAIN = 20.0  # seconds to wait for the last windows' webhooks
LAG_EVERY = 2.0  # seconds between scrapes of the daemon's consumer lag


@dataclass
class Produced:
    window: float
    start: float = math.nan  # the first window's start (epoch seconds), the reference
    sent: int = 0  # so far: read by the lag sampler while producing
    seconds: float = 0.0
    closers: dict[int, float] = field(default_factory=dict)  # window end (ms) -> send time


@dataclass
class Arrivals:
    """The receiver's record: arrival time (time.time()) and body of every POST."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    posts: list[tuple[float, bytes]] = field(default_factory=list)

    def respond(self, got: Received) -> Reply:
        arrived = time.time()
        with self.lock:
            self.posts.append((arrived, got.body))
        return 204, {}

    def by_window_end(self) -> dict[int, float]:
        """The first arrival of a notification of each window, by window end (ms)."""
        first: dict[int, float] = {}
        with self.lock:
            posts = list(self.posts)
        for arrived, body in posts:
            end = epoch_ms(msgspec.json.decode(body)["window"]["end"])
            first[end] = min(first.get(end, math.inf), arrived)
        return first


def bodies(rng: np.random.Generator, shifted: bool) -> list[bytes]:
    """Event bodies (all but id and timestamp) of the reference or the shifted stream."""
    x = rng.normal(3.0 if shifted else 0.0, 1.0, POOL)
    y = rng.normal(10.0, 2.0, POOL) * (1.5 if shifted else 1.0)
    z = rng.exponential(1.0, POOL)
    p = [0.1, 0.2, 0.3, 0.4] if shifted else [0.4, 0.3, 0.2, 0.1]
    c = rng.choice(["a", "b", "c", "d"], POOL, p=p)
    score = 1.0 / (1.0 + np.exp(-(x - 0.5)))
    latency = 20.0 + rng.exponential(5.0, POOL)
    columns = zip(*(a.tolist() for a in (x, y, z, c, score, latency)), strict=True)
    return [
        msgspec.json.encode(
            {
                "features": {"x": xi, "y": yi, "z": zi, "c": ci},
                "score": si,
                "prediction": int(si > 0.5),
                "latency_ms": li,
            }
        )[1:-1]
        for xi, yi, zi, ci, si, li in columns
    ]


def produce(
    bootstrap: str,
    topic: str,
    rate: float,
    seconds: float,
    run: Produced,
    begin: Callable[[], object] = lambda: None,
) -> None:
    """Events at ``rate`` per second stamped with the wall clock, from a window boundary
    for ``seconds`` (whole windows) and a little more, so that the last window closes;
    ``begin`` is called right before the first."""
    window = run.window
    rng = np.random.default_rng(7)
    reference, shifted = bodies(rng, False), bodies(rng, True)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1, batch_size=256 << 10)
    try:
        producer.partitions_for(topic)  # metadata now, not on the first send
        start = run.start = math.ceil(time.time() / window + 0.2) * window
        shift_ms = round((start + window) * 1000)  # the second window on: shifted
        closed = 1  # windows closed so far, the next one's end counted from start
        next_end = round((start + window) * 1000)
        stop = start + round(seconds / window) * window + 0.2
        time.sleep(max(start - time.time(), 0.0))
        begin()
        begun, i = time.time(), 0
        while (now := time.time()) < stop:
            due = min(int(rate * (now - begun)) + 1 - run.sent, CHUNK)
            if due <= 0:
                time.sleep(max(begun + (run.sent + 1) / rate - now, 0.0005))
                continue
            ts = int(now * 1000)
            pool = shifted if ts >= shift_ms else reference
            for k in range(due):
                producer.send(
                    topic,
                    value=b'{"event_id":%d,"model_id":"bench","timestamp":%d,%b}'
                    % (i, ts, pool[i % POOL]),
                    partition=0,
                )
                i += 1
                if k == 0 and ts >= next_end:
                    run.closers[next_end] = time.time()
                    closed += 1
                    next_end = round((start + closed * window) * 1000)
            run.sent += due
        run.seconds = time.time() - begun
        producer.flush()
    finally:
        producer.close()


def epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def window_closed_at(daemon: Daemon) -> dict[int, float]:
    """When the daemon logged each evaluated window as closed, by window end (ms)."""
    closed = {}
    for line in daemon.logs():
        if line.get("message") == "window closed" and line.get("role") == "evaluated":
            end = epoch_ms(str(line["window_end"]))
            closed[end] = datetime.fromisoformat(str(line["time"])).timestamp()
    return closed


def row(name: str, values: Sequence[float]) -> str:
    if not values:
        return f"{name:<34}{0:>8}" + f"{'-':>9}" * 5
    a = np.asarray(values)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return f"{name:<34}{len(a):>8}{p50:>9.3f}{p90:>9.3f}{p99:>9.3f}{a.max():>9.3f}{a.mean():>9.3f}"


@dataclass
class Observed:
    """What the daemon did while and after the events were produced."""

    # While producing: seconds on a CPU, seconds runnable but waiting for one, seconds
    # some task of the machine waited for a CPU (all three counters since boot at first).
    ran: float = 0.0
    waited: float = 0.0
    pressure: float = 0.0
    lag: list[int] = field(default_factory=list)  # events produced, not yet consumed
    metrics: dict[str, float] = field(default_factory=dict)
    closed_at: dict[int, float] = field(default_factory=dict)
    code: int | None = None

    def begin(self, daemon: Daemon) -> None:
        self.ran, self.waited = daemon.scheduled()
        self.pressure = cpu_pressure()

    def end(self, daemon: Daemon) -> None:
        ran, waited = daemon.scheduled()
        self.ran, self.waited = ran - self.ran, waited - self.waited
        self.pressure = cpu_pressure() - self.pressure


def sample_lag(daemon: Daemon, run: Produced, into: list[int], done: threading.Event) -> None:
    """Events sent but not yet consumed (the daemon's /metrics), every LAG_EVERY seconds."""
    while not done.wait(LAG_EVERY):
        sent = run.sent
        try:
            consumed = daemon.metrics().get("streamwatch_messages_total", 0.0)
        except requests.RequestException:
            continue
        if sent:
            into.append(max(sent - int(consumed), 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20_000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=150.0, help="of produced traffic")
    parser.add_argument("--window", type=float, default=3.0, help="window size, seconds")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="more daemon settings"
    )
    args = parser.parse_args()
    arrivals, seen = Arrivals(), Observed()
    with (
        kafka() as bootstrap,
        receiving(arrivals.respond) as receiver,
        tempfile.TemporaryDirectory(prefix="sw-latency-") as tmp,
    ):
        topic = create_topic(bootstrap, "latency")
        daemon = Daemon(
            bootstrap,
            topic,
            Path(tmp),
            window__size=f"{args.window}s",
            window__allowed_lateness=0,
            alerts__repeat_interval="1ms",
            sinks__hook__kind="webhook",
            sinks__hook__url=receiver.url,
            **daemon_settings(args.set),
        )
        run, done = Produced(args.window), threading.Event()
        sampler = threading.Thread(target=sample_lag, args=(daemon, run, seen.lag, done))
        try:
            daemon.start()
            daemon.wait_ready()
            sampler.start()
            produce(bootstrap, topic, args.rate, args.seconds, run, lambda: seen.begin(daemon))
            seen.end(daemon)
            done.set()
            sampler.join()
            deadline = time.monotonic() + DRAIN
            while time.monotonic() < deadline:
                seen.metrics = daemon.metrics()
                consumed = seen.metrics.get("streamwatch_messages_total", 0.0)
                if consumed >= run.sent and set(evaluated(run)) <= set(arrivals.by_window_end()):
                    break
                time.sleep(0.2)
            seen.closed_at = window_closed_at(daemon)
        finally:
            done.set()
            seen.code = daemon.stop()
            if sampler.is_alive():
                sampler.join()
    report(args, run, arrivals, seen)


def evaluated(run: Produced) -> list[int]:
    """The ends (ms) of the windows evaluated (all but the first, the reference) and closed."""
    return [end for end in run.closers if end >= round((run.start + 2 * run.window) * 1000)]


def report(args: argparse.Namespace, run: Produced, arrivals: Arrivals, seen: Observed) -> None:
    expected, arrived, closed_at = evaluated(run), arrivals.by_window_end(), seen.closed_at
    total = [arrived[e] - run.closers[e] for e in expected if e in arrived]
    to_close = [closed_at[e] - run.closers[e] for e in expected if e in closed_at]
    to_hook = [arrived[e] - closed_at[e] for e in expected if e in arrived and e in closed_at]
    missing = [e for e in expected if e not in arrived]
    metrics = seen.metrics
    checkpoints = metrics.get("streamwatch_checkpoint_seconds_count", 0.0)
    checkpoint_mean = metrics.get("streamwatch_checkpoint_seconds_sum", 0.0) / max(checkpoints, 1)
    batches = metrics.get("streamwatch_processing_seconds_count", 0.0)
    batch_mean = metrics.get("streamwatch_processing_seconds_sum", 0.0) / max(batches, 1)
    rate = run.sent / run.seconds
    lag = max(seen.lag, default=0)

    print(
        f"Alert latency: closing event sent -> webhook arrived, {args.window:g} s windows, "
        f"{args.rate:,.0f} events/s for {args.seconds:g} s, local broker"
    )
    print(f"{'seconds':<34}{'samples':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'mean':>9}")
    print(row("end to end (sent -> webhook)", total))
    print(row("  sent -> window closed (log)", to_close))
    print(row("  window closed -> webhook", to_hook))
    print(
        f"produced {run.sent:,} events in {run.seconds:.1f} s ({rate:,.0f}/s); the daemon "
        f"consumed {metrics.get('streamwatch_messages_total', 0.0):,.0f}; sent but not yet "
        f"consumed, every {LAG_EVERY:g} s: mean {np.mean(seen.lag or [0]):,.0f}, "
        f"max {lag:,} events ({lag / args.rate:.1f} s of traffic)"
    )
    print(
        f"daemon while producing: on a CPU {100 * seen.ran / run.seconds:.0f}% of the time, "
        f"runnable but waiting for one {100 * seen.waited / run.seconds:.0f}% (all threads); "
        f"machine: some task waiting for a CPU {100 * seen.pressure / run.seconds:.0f}% of the time"
    )
    slow = checkpoints - metrics.get('streamwatch_checkpoint_seconds_bucket{le="0.25"}', 0.0)
    print(
        f"daemon in all: {batches:,.0f} batches, {1000 * batch_mean:.1f} ms each on average; "
        f"{checkpoints:.0f} checkpoints, whose writes took {1000 * checkpoint_mean:.0f} ms on "
        f"average, {slow:.0f} over 0.25 s (snapshot and write)"
    )
    print(
        f"webhooks: {len(arrivals.posts)} received, {len(expected) - len(missing)} of "
        f"{len(expected)} evaluated windows notified; exit code after SIGTERM: {seen.code}"
    )
    if len(total) < 100:
        print(f"(with {len(total)} samples, the p99 is all but the maximum)")
    p99 = float(np.percentile(total, 99)) if total else math.inf
    sustained = rate >= 0.98 * args.rate
    interval = daemon_settings(args.set).get("state__checkpoint_interval")
    target = TARGET + (
        StateSettings().checkpoint_interval if interval is None else parse_duration(interval)
    )
    met = p99 < target and not missing and sustained
    print(
        f"target: p99 under {target:g} s (the checkpoint interval + {TARGET:g} s) at "
        f"{args.rate:,.0f} events/s: "
        + ("MET" if met else "NOT MET")
        + f" (p99 {p99:.3f} s"
        + ("" if sustained else f"; only {rate:,.0f} events/s produced")
        + (f"; {len(missing)} windows without a webhook" if missing else "")
        + ")"
    )


if __name__ == "__main__":
    main()
