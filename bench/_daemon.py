"""What the daemon benchmarks share: a broker, a fresh topic, and ``streamwatch run`` as a
subprocess (the installed entry point) with its settings in the environment.

Not a benchmark itself; imported by bench/alert_latency.py and bench/idle_cpu.py, which
put the repository on ``sys.path`` first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from kafka import KafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.helpers import json_lines
from tests.kafka_local import Broker, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def kafka() -> Iterator[str]:
    """The bootstrap address of SW_TEST_BOOTSTRAP, or of a broker started here
    (and removed, data and all, at the end)."""
    existing = os.environ.get("SW_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    broker = Broker().start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        shutil.rmtree(broker.workdir, ignore_errors=True)  # the log segments: 100s of MB


def create_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    """A fresh topic (of one partition unless told)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})
    finally:
        admin.close()
    return name


def daemon_settings(pairs: list[str]) -> dict[str, str]:
    """``--set`` options (``kafka__client=confluent``) as Daemon keyword settings."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair}: expected KEY=VALUE, e.g. kafka__client=confluent")
        settings[key.strip().lower().removeprefix("streamwatch_")] = value
    return settings


def _command() -> list[str]:
    """The ``streamwatch`` entry point of the running interpreter's environment (.venv)."""
    entry = Path(sys.executable).parent / "streamwatch"
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "streamwatch"]


def cpu_pressure() -> float:
    """Seconds, since boot, that some runnable task waited for a CPU (PSI); 0 without."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return 0.0
    return int(some.rsplit("total=", 1)[1]) / 1e6


class Daemon:
    """``streamwatch --log-level INFO run`` with ``settings`` as STREAMWATCH_ variables
    (nothing inherited from ours), its JSON log lines in ``workdir/daemon.log``, its
    health and metrics server on a free port of 127.0.0.1, its state in ``workdir``."""

    def __init__(self, bootstrap: str, topic: str, workdir: Path, **settings: object) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "daemon.log"
        variables: dict[str, object] = {
            "kafka__bootstrap_servers": bootstrap,
            "kafka__topics": json.dumps([topic]),
            "kafka__group_id": f"bench-{uuid.uuid4().hex[:8]}",
            "state__path": workdir / "state.sqlite",
            "server__host": "127.0.0.1",
            "server__port": self.port,
            **settings,
        }
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMWATCH_")}
        self.env.update({f"STREAMWATCH_{k.upper()}": str(v) for k, v in variables.items()})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Daemon:
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [*_command(), "--log-level", "INFO", "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until /readyz answers 200; return the seconds it took."""
        assert self.process is not None
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited early; see {self.log_path}")
            try:
                if requests.get(f"{self.base}/readyz", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the daemon was not ready within {timeout:.0f} s; see {self.log_path}")

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, summed over labels, by sample name; a histogram's
        buckets by name and bound, e.g. ``streamwatch_checkpoint_seconds_bucket{le="0.5"}``."""
        text = requests.get(f"{self.base}/metrics", timeout=5.0).text
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name
                if name.endswith("_bucket"):
                    name += f'{{le="{sample.labels["le"]}"}}'
                totals[name] = totals.get(name, 0.0) + sample.value
        return totals

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the daemon process so far (/proc/<pid>/stat)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / CLOCK_TICKS

    def scheduled(self) -> tuple[float, float]:
        """Seconds the daemon's threads have run on a CPU, and waited for one while
        runnable (/proc/<pid>/task/*/schedstat): the second says how contended the
        machine was for it."""
        ran = waited = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                on_cpu, on_queue, _ = (task / "schedstat").read_text().split()
            except OSError:  # the thread ended meanwhile
                continue
            ran, waited = ran + int(on_cpu), waited + int(on_queue)
        return ran / 1e9, waited / 1e9

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM, then wait for the exit code (SIGKILL past ``timeout``: code -9)."""
        if self.process is None:
            return 0
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def logs(self) -> list[dict[str, Any]]:
        return json_lines(self.log_path)
