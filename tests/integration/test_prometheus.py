"""The Prometheus rules under promtool (Debian's ``prometheus``; ``make test`` installs it):
they load, and their unit tests pass, the first dead notification of a sink among them;
and a real Prometheus scraping a served registry sees each sink's counters from 0."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streamwatch.config import ServerSettings
from streamwatch.observe.health import Health, serve
from streamwatch.observe.metrics import Metrics
from tests.integration.helpers import wait_for
from tests.kafka_local import free_port

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus"


def executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"no {name} on PATH: apt-get install prometheus (make test does)")
    return found


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    command = [executable("promtool"), *args]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_the_rules_load() -> None:
    done = promtool("check", "rules", "streamwatch-rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_the_rules_unit_tests_pass() -> None:
    tests = (RULES / "streamwatch-rules.test.yml").read_text()
    assert "StreamwatchNotificationsDead" in tests
    done = promtool("test", "rules", "streamwatch-rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_first_dead_notification_of_a_series_born_with_it_fires(tmp_path: Path) -> None:
    """The case of issue 19, alone, so that a rule that misses it cannot pass."""
    (tmp_path / "streamwatch-rules.yml").write_text((RULES / "streamwatch-rules.yml").read_text())
    labels = 'job="streamwatch", instance="sw:9108", sink="chat", result="dead"'
    first = {
        "rule_files": ["streamwatch-rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"streamwatch_notifications_total{{{labels}}}", "values": "_x3 1x20"}
                ],
                "promql_expr_test": [
                    {
                        "expr": 'ALERTS{alertname="StreamwatchNotificationsDead"}',
                        "eval_time": "6m",
                        "exp_samples": [
                            {
                                "labels": 'ALERTS{alertname="StreamwatchNotificationsDead", '
                                'alertstate="firing", severity="critical", job="streamwatch", '
                                'instance="sw:9108", sink="chat"}',
                                "value": 1,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "first.yml").write_text(json.dumps(first))  # JSON is YAML
    done = promtool("test", "rules", "first.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Metrics]]:
    """A real Prometheus scraping, every second, a server of a fresh registry whose
    metrics deliver to sinks "chat" and "hook"; its API's base URL and the metrics."""
    metrics = Metrics(CollectorRegistry())
    metrics.delivering(["chat", "hook"], lambda: {"hook": 2})
    server = serve(
        ServerSettings(port=0), metrics.registry, Health(liveness_timeout=60.0, restored=True)
    )
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "streamwatch-rules.yml")],
        "scrape_configs": [
            {
                "job_name": "streamwatch",
                "static_configs": [{"targets": [f"127.0.0.1:{server.server_port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                executable("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield f"http://127.0.0.1:{port}", metrics
    finally:
        process.terminate()
        process.wait(30)
        server.shutdown()
        server.server_close()


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, Any]] = json.load(response)["data"]["result"]
    except OSError:
        return []  # not up yet
    return result


def test_a_real_prometheus_scrapes_each_sinks_counters_from_0_and_its_backlog(
    prometheus: tuple[str, Metrics],
) -> None:
    base, metrics = prometheus
    dead = 'streamwatch_notifications_total{result="dead"}'
    wait_for(lambda: len(query(base, dead)) == 2, 60, "a scrape of both sinks")
    assert {r["metric"]["sink"]: r["value"][1] for r in query(base, dead)} == {
        "chat": "0",
        "hook": "0",
    }
    pending = {
        r["metric"]["sink"]: r["value"][1] for r in query(base, "streamwatch_outbox_pending")
    }
    assert pending == {"chat": "0", "hook": "2"}
    metrics.notifications.labels("hook", "dead").inc()
    increase = f"sum by (sink) (increase({dead}[1m]))"
    wait_for(
        lambda: any(float(r["value"][1]) > 0 for r in query(base, increase)),
        30,
        "the first dead notification, seen by increase()",
    )
    assert query(base, 'up{job="streamwatch"}')[0]["value"][1] == "1"
