"""streamwatch and a real Alertmanager (Debian's ``prometheus-alertmanager``, installed by
``make test``): alerts go policy → router → outbox → dispatcher → the alertmanager sink,
stay active past Alertmanager's ``resolve_timeout`` (and past a restart of the sink),
resolve when streamwatch resolves them; and the webhook payload Alertmanager sends has
the keys and JSON types of the one streamwatch's own webhook sink sends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
from prometheus_client import CollectorRegistry

from streamwatch.alerting.dispatcher import Dispatcher
from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import AlertPolicy, Notification, report_link
from streamwatch.alerting.routing import Router
from streamwatch.config import AlertmanagerSinkSettings, WebhookSinkSettings
from streamwatch.detectors import Finding, Severity
from streamwatch.observe.metrics import Metrics
from streamwatch.sinks import RoutedSink
from streamwatch.sinks.alertmanager import AlertmanagerSink
from streamwatch.sinks.webhook import WebhookSink
from streamwatch.windows import WindowBounds
from tests.integration.helpers import wait_for
from tests.integration.receivers import Received, Receiver, Reply, receiving

RESOLVE_TIMEOUT = 3.0  # Alertmanager's, seconds: a firing alert not posted again ends
RESEND = 0.5  # the sink's resend interval: a posted alert ends 4 resends later, 2 s
REPORT = "http://streamwatch.example:8080"
CONFIG = """
global:
  resolve_timeout: {resolve_timeout}s
route:
  receiver: hook
  group_by: [model]
  group_wait: 200ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


def accept(got: Received) -> Reply:
    return 200, {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Alertmanager:
    url: str
    hook: Receiver  # what Alertmanager's webhook receiver got

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds as active (not resolved)."""
        response = requests.get(f"{self.url}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def subjects(self) -> set[str]:
        return {a["labels"]["subject"] for a in self.alerts() if a["status"]["state"] == "active"}

    def payloads(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(r.body) for r in self.hook.requests]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail("prometheus-alertmanager is missing: run scripts/ensure-prometheus")
    with receiving(accept) as hook:
        config = tmp_path / "alertmanager.yml"
        config.write_text(CONFIG.format(resolve_timeout=int(RESOLVE_TIMEOUT), url=hook.url))
        port = free_port()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        am = Alertmanager(f"http://127.0.0.1:{port}", hook)
        try:
            wait_for(lambda: _ready(am.url), 20.0, "Alertmanager to be ready", every=0.1)
            yield am
        finally:
            process.terminate()
            _, errors = process.communicate(timeout=10)
            assert b"level=error" not in errors, errors.decode()


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=1).ok
    except requests.ConnectionError:
        return False


@dataclass
class Streamwatch:
    """The alerting path of the daemon: policy, router, outbox, dispatcher, two sinks."""

    am: Alertmanager
    webhook: Receiver  # what streamwatch's own webhook sink sent
    t0: float = field(default_factory=lambda: time.time() - 600.0)
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    outbox: Outbox = field(default_factory=Outbox)
    dispatcher: Dispatcher | None = None
    router: Router | None = None

    def start(self) -> None:
        am = AlertmanagerSinkSettings(kind="alertmanager", url=self.am.url, resend_interval=RESEND)
        hook = WebhookSinkSettings(kind="webhook", url=self.webhook.url)
        sinks = [
            RoutedSink(AlertmanagerSink("am", am), am),
            RoutedSink(WebhookSink("hook", hook), hook),
        ]
        self.router = Router(sinks, (), self.outbox)
        self.dispatcher = Dispatcher(self.outbox, sinks, Metrics(CollectorRegistry()))
        self.dispatcher.start()

    def restart(self) -> None:
        """A new daemon: the policy restored from its snapshot, new sinks told of it."""
        assert self.dispatcher is not None
        self.dispatcher.stop()
        snapshot = msgspec.msgpack.decode(msgspec.msgpack.encode(self.policy.snapshot()))
        self.policy = AlertPolicy()
        self.policy.restore(snapshot)
        self.start()
        assert self.dispatcher is not None
        self.dispatcher.resume(self.policy.standing())  # what the conclusion's restore does

    def window(self, index: int, **severities: Severity) -> Notification:
        """Close window ``index`` of model fraud with a finding per subject."""
        assert self.router is not None
        assert self.dispatcher is not None
        bounds = WindowBounds(index, self.t0 + 60.0 * index, self.t0 + 60.0 * (index + 1))
        findings = [_finding(subject, severity, bounds) for subject, severity in severities.items()]
        notification = self.policy.observe("fraud", bounds, findings)
        assert notification is not None
        notification = replace(notification, link=report_link(REPORT, "fraud", bounds))
        self.router.route(notification)
        self.dispatcher.wake()
        return notification

    def stop(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.outbox.close()

    def payloads(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(r.body) for r in self.webhook.requests]


def _finding(subject: str, severity: Severity, window: WindowBounds) -> Finding:
    value = {Severity.OK: 0.01, Severity.WARNING: 0.15, Severity.CRITICAL: 0.4}[severity]
    return Finding(
        "fraud",
        "feature_drift",
        subject,
        "wasserstein",
        value,
        0.1,
        severity,
        1000,
        1000,
        window,
        f"feature '{subject}' moved {value} reference sd",
    )


@pytest.fixture
def streamwatch(alertmanager: Alertmanager) -> Iterator[Streamwatch]:
    with receiving(accept) as webhook:
        sw = Streamwatch(alertmanager, webhook)
        sw.start()
        try:
            yield sw
        finally:
            sw.stop()


def test_alerts_stay_active_while_they_fire_and_resolve_when_streamwatch_resolves_them(
    alertmanager: Alertmanager, streamwatch: Streamwatch
) -> None:
    fired = streamwatch.window(1, amount=Severity.WARNING, country=Severity.CRITICAL)
    until(lambda: alertmanager.subjects() == {"amount", "country"}, "both alerts to be active")
    held = {a["labels"]["subject"]: a for a in alertmanager.alerts()}
    for alert in fired.alerts:
        shown = held[alert.labels["subject"]]
        assert shown["labels"] == alert.labels
        assert shown["generatorURL"] == fired.link
        assert shown["annotations"]["summary"] == alert.summary

    # Past Alertmanager's resolve_timeout and the lifetime of one post, twice over:
    # posted again, both stay active; then the same past a restart of the daemon.
    _stay_active(alertmanager, {"amount", "country"}, 2 * RESOLVE_TIMEOUT)
    streamwatch.restart()
    _stay_active(alertmanager, {"amount", "country"}, 2 * RESOLVE_TIMEOUT)

    streamwatch.window(2, amount=Severity.OK, country=Severity.CRITICAL)
    until(lambda: alertmanager.subjects() == {"country"}, "amount to resolve")
    _stay_active(alertmanager, {"country"}, RESOLVE_TIMEOUT)
    streamwatch.window(3, country=Severity.OK)
    until(lambda: alertmanager.subjects() == set(), "country to resolve")
    until(
        lambda: _statuses(alertmanager.payloads())[-1:] == [{"country": "resolved"}],
        "Alertmanager to send the resolution",
    )


def test_alertmanagers_webhook_payload_has_the_keys_and_types_of_streamwatchs(
    alertmanager: Alertmanager, streamwatch: Streamwatch
) -> None:
    streamwatch.window(1, amount=Severity.WARNING, country=Severity.CRITICAL)
    firing = {"amount": "firing", "country": "firing"}
    until(lambda: firing in _statuses(alertmanager.payloads()), "the firing group")
    streamwatch.window(2, amount=Severity.OK)  # country fires on, unchanged
    one_resolved = {"amount": "resolved", "country": "firing"}
    until(lambda: one_resolved in _statuses(alertmanager.payloads()), "amount resolved")
    streamwatch.window(3, country=Severity.OK)
    until(lambda: {"country": "resolved"} in _statuses(alertmanager.payloads()), "all resolved")

    ours = {_key(p): p for p in streamwatch.payloads()}
    theirs = {_key(p): p for p in alertmanager.payloads()}
    for key in (_key_of(firing), _key_of(one_resolved), _key_of({"country": "resolved"})):
        mine, real = ours[key], theirs[key]
        for extra in ("id", "window", "changed"):  # streamwatch's, beside Alertmanager's
            assert mine.pop(extra)
        assert _shape(mine) == _shape(real), key
        assert (mine["version"], mine["groupLabels"], mine["status"]) == (
            real["version"],
            real["groupLabels"],
            real["status"],
        )
        assert mine["commonLabels"] == real["commonLabels"]
        assert mine["commonAnnotations"] == real["commonAnnotations"]


def until(condition: Callable[[], object], what: str) -> None:
    wait_for(condition, 10.0, what, every=0.1)


def _stay_active(am: Alertmanager, subjects: set[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert am.subjects() == subjects
        time.sleep(0.25)


def _statuses(payloads: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{a["labels"]["subject"]: a["status"] for a in p["alerts"]} for p in payloads]


def _key(payload: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return _key_of({a["labels"]["subject"]: a["status"] for a in payload["alerts"]})


def _key_of(statuses: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(statuses.items()))


def _shape(value: Any) -> Any:
    """Keys and JSON types, recursively; a list by the shapes of its items."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        shapes: list[Any] = []
        for item in map(_shape, value):
            if item not in shapes:
                shapes.append(item)
        return sorted(shapes, key=repr)
    return type(value).__name__
