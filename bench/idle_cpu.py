"""Idle cost: the CPU ``streamwatch run`` uses with no traffic. Target: under 1% of a core.

Starts a broker (or uses SW_TEST_BOOTSTRAP), an empty topic and the daemon with
default settings (plus the broker, the topic, a state file in a temporary directory and
a free health port), waits for /readyz, lets it settle, then reads the process's user
and system CPU time from /proc over a minute without a single event, in slices of ten
seconds. Stops it with SIGTERM and checks it exits 0.

    make bench   (or: .venv/bin/python bench/idle_cpu.py [--seconds S]
                  [--set kafka__client=confluent ...])
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._daemon import Daemon, create_topic, daemon_settings, kafka

TARGET = 1.0  # percent of one core
SETTLE = 5.0  # seconds after /readyz before measuring (the group join's aftermath)
SLICE = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="of idle measured")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="more daemon settings"
    )
    args = parser.parse_args()
    seconds = args.seconds
    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="sw-idle-") as tmp:
        topic = create_topic(bootstrap, "idle")
        daemon = Daemon(bootstrap, topic, Path(tmp), **daemon_settings(args.set))
        code: int | None = None
        try:
            daemon.start()
            ready = daemon.wait_ready()
            time.sleep(SETTLE)
            slices: list[tuple[float, float]] = []  # (wall seconds, cpu seconds)
            wall, cpu = time.monotonic(), daemon.cpu_seconds()
            while not slices or sum(w for w, _ in slices) < seconds - 1e-6:
                time.sleep(min(SLICE, seconds - sum(w for w, _ in slices)))
                now_wall, now_cpu = time.monotonic(), daemon.cpu_seconds()
                slices.append((now_wall - wall, now_cpu - cpu))
                wall, cpu = now_wall, now_cpu
            consumed = daemon.metrics().get("streamwatch_messages_total", 0.0)
        finally:
            code = daemon.stop()
    total_wall = sum(w for w, _ in slices)
    total_cpu = sum(c for _, c in slices)
    percent = 100.0 * total_cpu / total_wall
    extra = f" plus {', '.join(args.set)}" if args.set else ""
    print(f"Idle CPU of `streamwatch run` on an empty topic, default settings{extra}, local broker")
    print(f"ready after {ready:.1f} s; measured from {SETTLE:.0f} s after ready")
    print(f"{'interval':<12}{'wall s':>10}{'cpu s':>10}{'% of a core':>14}")
    start = 0.0
    for w, c in slices:
        print(f"{f'{start:.0f}-{start + w:.0f} s':<12}{w:>10.2f}{c:>10.3f}{100 * c / w:>14.2f}")
        start += w
    print(f"{'total':<12}{total_wall:>10.2f}{total_cpu:>10.3f}{percent:>14.2f}")
    print(f"messages consumed: {consumed:.0f}; exit code after SIGTERM: {code}")
    met = percent < TARGET and code == 0
    print(
        f"target: under {TARGET:.0f}% of a core idle, clean exit: "
        + ("MET" if met else "NOT MET")
        + f" ({percent:.2f}%, exit {code})"
    )


if __name__ == "__main__":
    main()
