"""The operator's endpoints (health.py): live while the loop polls, ready once state is
restored and partitions assigned until a drain starts; served by a real server in a
thread. tests/integration/test_health.py drives them through a running daemon."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from streamwatch.config import ServerSettings
from streamwatch.observe.health import Health, serve


def test_live_while_the_loop_polls_within_the_timeout() -> None:
    health = Health(liveness_timeout=30.0)
    ok, checks = health.live()
    since = checks["seconds_since_poll"]
    assert ok
    assert isinstance(since, float)
    assert 0 <= since < 30
    health.polled_at = time.monotonic() - 31  # a loop stuck for longer than the timeout
    ok, checks = health.live()
    since = checks["seconds_since_poll"]
    assert not ok
    assert isinstance(since, float)
    assert since >= 31
    health.polled()
    assert health.live()[0]


def test_ready_once_restored_and_assigned_and_not_while_draining() -> None:
    health = Health(liveness_timeout=30.0)
    assert health.ready() == (False, {"restored": False, "assigned": False, "draining": False})
    health.restored = True
    assert health.ready()[0] is False  # no partitions yet
    health.assigned = lambda: True
    assert health.ready() == (True, {"restored": True, "assigned": True, "draining": False})
    health.draining = True
    assert health.ready() == (False, {"restored": True, "assigned": True, "draining": True})


def test_a_consumer_that_raises_when_asked_counts_as_not_assigned() -> None:
    def closing() -> bool:
        raise RuntimeError("the consumer is closing")

    health = Health(liveness_timeout=30.0, restored=True, assigned=closing)
    assert health.ready() == (False, {"restored": True, "assigned": False, "draining": False})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Health]]:
    """A server of a registry with one counter, a health and a state file not written yet."""
    registry = CollectorRegistry()
    Counter("streamwatch_probe", "A counter to scrape", registry=registry).inc(2)
    health = Health(liveness_timeout=30.0, restored=True, assigned=lambda: True)
    server = serve(ServerSettings(port=0), registry, health, tmp_path / "none.sqlite")
    try:
        yield f"http://127.0.0.1:{server.server_port}", health
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read()


def test_the_server_answers_json_with_the_status_of_each_check(
    served: tuple[str, Health],
) -> None:
    base, health = served
    status, kind, body = get(f"{base}/readyz")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body) == {"ok": True, "restored": True, "assigned": True, "draining": False}
    health.draining = True
    status, _, body = get(f"{base}/readyz")
    assert status == 503
    assert json.loads(body)["draining"] is True
    status, _, body = get(f"{base}/livez")
    assert status == 200
    assert json.loads(body)["ok"] is True


def test_the_server_serves_the_registry_and_names_its_endpoints_elsewhere(
    served: tuple[str, Health],
) -> None:
    base, _ = served
    status, _, body = get(f"{base}/metrics")
    assert status == 200
    assert "streamwatch_probe_total 2.0" in body.decode()
    assert get(f"{base}/nowhere")[::2] == (404, b"not found: /metrics, /livez, /readyz, /report\n")


def test_a_report_of_a_state_file_that_is_not_there_is_refused_saying_why(
    served: tuple[str, Health],
) -> None:
    base, _ = served
    status, kind, body = get(f"{base}/report?model=m")
    assert (status, kind) == (400, "text/plain; charset=utf-8")
    assert "no state file" in body.decode()


def head(url: str) -> tuple[int, str, str, bytes]:
    """Status, content type, content length and body of a HEAD, whatever the status."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            headers = response.headers
            return (
                int(response.status),
                headers["Content-Type"],
                headers["Content-Length"],
                response.read(),
            )
    except urllib.error.HTTPError as error:
        with error:
            headers = error.headers
            return error.code, headers["Content-Type"], headers["Content-Length"], error.read()


@pytest.mark.parametrize("path", ["/metrics", "/livez", "/readyz", "/nowhere"])
def test_a_head_is_answered_as_a_get_without_the_body(
    served: tuple[str, Health], path: str
) -> None:
    base, health = served
    health.draining = path == "/readyz"  # a 503 too
    status, kind, body = get(f"{base}{path}")
    assert head(f"{base}{path}") == (status, kind, str(len(body)), b"")
    assert status == {"/metrics": 200, "/livez": 200, "/readyz": 503, "/nowhere": 404}[path]
