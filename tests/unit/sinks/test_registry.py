from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from streamwatch.config import (
    ENTRY_POINT_GROUP,
    SINK_SETTINGS,
    AlertmanagerSinkSettings,
    AppriseSinkSettings,
    FileSinkSettings,
    GithubIssueSinkSettings,
    JiraSinkSettings,
    KafkaSinkSettings,
    LogSinkSettings,
    RetrainSinkSettings,
    ReviewSinkSettings,
    Settings,
    WebhookSinkSettings,
)
from streamwatch.errors import ConfigError
from streamwatch.sinks import Sink, build_sink
from streamwatch.sinks.alertmanager import AlertmanagerSink
from streamwatch.sinks.apprise import AppriseSink
from streamwatch.sinks.file import FileSink
from streamwatch.sinks.kafka import KafkaSink
from streamwatch.sinks.log import LogSink
from streamwatch.sinks.registry import BUILT_IN, SinkKind, sink_kinds, third_party
from streamwatch.sinks.retrain import RetrainSink
from streamwatch.sinks.review import ReviewTopic
from streamwatch.sinks.tickets import TicketSink
from streamwatch.sinks.tickets.github import GithubIssues
from streamwatch.sinks.tickets.jira import JiraIssues
from streamwatch.sinks.webhook import WebhookSink

ROOT = Path(__file__).parents[3]
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing is sent there anyway

# kind -> the least settings it takes, and what its sink is.
MINIMAL: dict[str, tuple[Callable[[Path], Any], Callable[[Sink], bool]]] = {
    "log": (lambda _: LogSinkSettings(kind="log"), lambda s: isinstance(s, LogSink)),
    "file": (
        lambda tmp: FileSinkSettings(kind="file", path=tmp / "alerts.jsonl"),
        lambda s: isinstance(s, FileSink),
    ),
    "apprise": (
        lambda _: AppriseSinkSettings(kind="apprise", urls=("json://127.0.0.1:9/",)),
        lambda s: isinstance(s, AppriseSink),
    ),
    "webhook": (
        lambda _: WebhookSinkSettings(kind="webhook", url=f"{NOWHERE}/hook"),
        lambda s: isinstance(s, WebhookSink),
    ),
    "alertmanager": (
        lambda _: AlertmanagerSinkSettings(kind="alertmanager", url=NOWHERE),
        lambda s: isinstance(s, AlertmanagerSink),
    ),
    "retrain": (
        lambda _: RetrainSinkSettings(kind="retrain", url=f"{NOWHERE}/run"),
        lambda s: isinstance(s, RetrainSink),
    ),
    "jira": (
        lambda _: JiraSinkSettings(kind="jira", url=NOWHERE, project="ML", user="u", token="t"),
        lambda s: isinstance(s, TicketSink) and isinstance(s.tracker, JiraIssues),
    ),
    "github_issue": (
        lambda _: GithubIssueSinkSettings(kind="github_issue", repository="acme/ml", token="t"),
        lambda s: isinstance(s, TicketSink) and isinstance(s.tracker, GithubIssues),
    ),
    "kafka": (
        lambda _: KafkaSinkSettings(kind="kafka", topic="alerts"),
        lambda s: isinstance(s, KafkaSink),
    ),
    "review": (
        lambda _: ReviewSinkSettings(kind="review", topic="reviews"),
        lambda s: isinstance(s, ReviewTopic),
    ),
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a sink was built with a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_every_built_in_kind_has_a_minimal_example() -> None:
    assert sorted(BUILT_IN) == sorted(MINIMAL)
    assert all(name == kind.kind for name, kind in BUILT_IN.items())


def test_the_sinks_and_the_settings_know_the_same_kinds() -> None:
    assert {name: kind.settings for name, kind in sink_kinds().items()} == SINK_SETTINGS


@pytest.mark.parametrize("name", sorted(MINIMAL))
@pytest.mark.usefixtures("no_network")
def test_each_built_in_kind_builds_its_sink_without_the_network(name: str, tmp_path: Path) -> None:
    make_settings, is_its_sink = MINIMAL[name]
    settings = make_settings(tmp_path)
    kind = sink_kinds()[name]
    assert isinstance(settings, kind.settings)
    assert settings.kind == name
    sink = build_sink("a", settings, Settings())
    try:
        assert sink.name == "a"
        assert is_its_sink(sink)
    finally:
        sink.close()


def test_building_a_sink_imports_only_its_own_module() -> None:
    # apprise loads every plugin on import: a daemon without an apprise sink must not pay.
    script = textwrap.dedent(
        """
        import sys
        from streamwatch.config import LogSinkSettings, Settings
        from streamwatch.sinks import build_sink
        build_sink("a", LogSinkSettings(kind="log"), Settings())
        print(sorted(m for m in ("apprise", "streamwatch.sinks.tickets") if m in sys.modules))
        """
    )
    assert _python(script, {}) == "[]"


def _build(name: str, settings: LogSinkSettings, everything: Settings) -> Sink:
    return LogSink(name)


# Objects the entry points of the tests below point at.
LOG_AGAIN = SinkKind("log", LogSinkSettings, _build)
PAGER = SinkKind("pager", LogSinkSettings, _build)
PAGER_TOO = SinkKind("pager", LogSinkSettings, _build)
NOT_A_KIND = object()


def _point(name: str, attribute: str) -> EntryPoint:
    return EntryPoint(name, f"{__name__}:{attribute}", ENTRY_POINT_GROUP)


def test_third_party_kinds_are_read_from_their_entry_points() -> None:
    found = third_party([_point("pager", "PAGER"), _point("pager", "PAGER")])
    assert found == {"pager": PAGER}


@pytest.mark.parametrize(
    ("points", "error"),
    [
        (
            [_point("log", "LOG_AGAIN")],
            f"entry point log = {__name__}:LOG_AGAIN in group streamwatch.sinks: "
            "sink kind 'log' clashes with the built-in one",
        ),
        (
            [_point("pager", "PAGER"), _point("pager2", "PAGER_TOO")],
            f"entry point pager2 = {__name__}:PAGER_TOO in group streamwatch.sinks: "
            f"sink kind 'pager' clashes with entry point pager = {__name__}:PAGER",
        ),
        (
            [_point("odd", "NOT_A_KIND")],
            f"entry point odd = {__name__}:NOT_A_KIND in group streamwatch.sinks: "
            "loads an object of type object, not a SinkKind",
        ),
        (
            [_point("gone", "NO_SUCH_NAME")],
            f"entry point gone = {__name__}:NO_SUCH_NAME in group streamwatch.sinks "
            "cannot be loaded: AttributeError",
        ),
    ],
)
def test_a_wrong_entry_point_is_an_error_that_names_it(
    points: list[EntryPoint], error: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        third_party(points)
    assert str(caught.value).startswith(error)


THIRD_PARTY = '''
"""A sink kind from another package: each notification as a line in a file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from streamwatch.alerting.policy import Notification
from streamwatch.config import Settings, SinkSettingsBase
from streamwatch.sinks import Delivered, DeliveryResult, Sink
from streamwatch.sinks.registry import SinkKind


class PagerSettings(SinkSettingsBase):
    kind: Literal["pager"]
    path: Path


class PagerSink:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def send(self, notification: Notification) -> DeliveryResult:
        with self.path.open("a") as out:
            out.write(f"{self.name} {notification.id}\\n")
        return Delivered(self.name)

    def close(self) -> None:
        pass


def build(name: str, settings: PagerSettings, everything: Settings) -> Sink:
    return PagerSink(name, settings.path)


KIND = SinkKind("pager", PagerSettings, build)
'''


def _install_third_party(site: Path) -> None:
    """A package as an installer leaves it: its module and its dist-info."""
    (site / "thirdparty.py").write_text(THIRD_PARTY)
    info = site / "thirdparty-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[streamwatch.sinks]\npager = thirdparty:KIND\n")


def _python(script: str, env: dict[str, str], path: Path | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMWATCH_")}
    pythonpath = os.pathsep.join(str(p) for p in (path, ROOT) if p is not None)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        env={**clean, **env, "PYTHONPATH": pythonpath},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_third_party_kind_is_configured_built_and_sent_to(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install_third_party(site)
    pages = tmp_path / "pages.txt"
    script = textwrap.dedent(
        """
        import json
        from streamwatch.config import load_settings
        from streamwatch.sinks import build_sinks
        from tests.unit.sinks.test_sinks import notification

        [page] = build_sinks(load_settings())
        sent = notification()
        result = page.sink.send(sent)
        page.sink.close()
        print(json.dumps([type(page.settings).__name__, sent.id, repr(result)]))
        """
    )
    env = {"STREAMWATCH_SINKS__PAGE__KIND": "pager", "STREAMWATCH_SINKS__PAGE__PATH": str(pages)}
    settings, sent, result = json.loads(_python(script, env, site))
    assert settings == "PagerSettings"
    assert result == "Delivered(sink='page')"
    assert pages.read_text() == f"page {sent}\n"
