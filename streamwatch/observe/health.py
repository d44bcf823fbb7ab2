"""The operator's endpoints on one small HTTP server: ``/metrics``, ``/livez``, ``/readyz``,
and ``/report`` (the HTML report of the state file's history, what alert links open).

``/livez`` is 200 while the loop has polled within ``SERVER__LIVENESS_TIMEOUT`` (a hung
loop is worth a restart), and while the daemon waits for Kafka to answer at start (a
restart would not bring Kafka, and would take a sidecar's pod out of service);
``/readyz`` is 200 once state is restored and partitions are assigned, and 503 again
from the moment a shutdown starts draining. Both answer JSON saying why. A HEAD request
is answered as a GET, without the body.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamwatch.config import ServerSettings
from streamwatch.errors import ConfigError, StateError


@dataclass
class Health:
    """What the loop reports about itself; read by the endpoints' threads."""

    liveness_timeout: float
    polled_at: float = field(default_factory=time.monotonic)
    restored: bool = False
    draining: bool = False
    waiting: bool = False  # for Kafka, at start: alive, not hung
    assigned: Callable[[], bool] = lambda: False

    def polled(self) -> None:
        self.polled_at = time.monotonic()

    def live(self) -> tuple[bool, dict[str, object]]:
        since = time.monotonic() - self.polled_at
        checks: dict[str, object] = {"seconds_since_poll": round(since, 3)}
        if self.waiting:
            return True, checks | {"waiting_for": "kafka"}
        return since <= self.liveness_timeout, checks

    def ready(self) -> tuple[bool, dict[str, object]]:
        try:
            assigned = self.assigned()
        except Exception:  # the consumer is closing or not made yet
            assigned = False
        checks: dict[str, object] = {
            "restored": self.restored,
            "assigned": assigned,
            "draining": self.draining,
        }
        return self.restored and assigned and not self.draining, checks


def serve(
    settings: ServerSettings,
    registry: CollectorRegistry,
    health: Health,
    state: Path | None = None,
) -> ThreadingHTTPServer:
    """Start the server in a daemon thread; ``shutdown()`` it at exit. With ``state``,
    ``/report`` renders the report of that state file's history."""

    class Handler(BaseHTTPRequestHandler):
        head = False  # a HEAD request: answered as a GET, without the body

        def do_HEAD(self) -> None:
            self.head = True
            self.do_GET()

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/report" and state is not None:
                self._report(state, dict(urllib.parse.parse_qsl(query)))
            elif path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/livez", "/readyz"):
                ok, checks = health.live() if path == "/livez" else health.ready()
                body = msgspec.json.encode({"ok": ok, **checks})
                self._reply(200 if ok else 503, body, "application/json")
            else:
                self._reply(404, b"not found: /metrics, /livez, /readyz, /report\n", "text/plain")

        def _report(self, state: Path, query: dict[str, str]) -> None:
            from streamwatch.observe import report  # matplotlib: loaded only to draw

            try:
                body = report.page(state, query)
            except (ConfigError, StateError) as exc:
                self._reply(400, f"{exc}\n".encode(), "text/plain; charset=utf-8")
                return
            self._reply(200, body, "text/html; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not self.head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds are not news."""

    server = ThreadingHTTPServer((settings.host, settings.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
