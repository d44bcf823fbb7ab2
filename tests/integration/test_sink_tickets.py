"""Ticket sinks against local fake GitHub and Jira servers: one issue per alert.

Each fake is a real HTTP server on 127.0.0.1 that implements the few endpoints the
sinks call, over in-memory issues, and refuses calls without the right credentials.
The lifecycle checks run against both; tracker-specific ones follow.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from streamwatch.alerting.policy import Alert, Notification, fingerprint
from streamwatch.config import GithubIssueSinkSettings, JiraSinkSettings
from streamwatch.sinks.base import Delivered, DeliveryFailed
from streamwatch.sinks.tickets import TicketSink, github_issue_sink, jira_sink
from streamwatch.sinks.tickets.jira import wiki
from streamwatch.windows import WindowBounds

pytestmark = pytest.mark.integration

TOKEN = "tok-3f9a-secret"
JIRA_USER = "bot@example.com"
WINDOW = WindowBounds(7, 1_795_305_600.0, 1_795_309_200.0)
Answer = tuple[int, Any]


def alert(
    status: str = "firing",
    severity: str = "warning",
    subject: str = "amount",
    repeated: bool = False,
) -> Alert:
    labels = {
        "alertname": "FeatureDrift",
        "model": "fraud",
        "detector": "feature_drift",
        "subject": subject,
        "statistic": "wasserstein",
    }
    firing = status == "firing"
    return Alert(
        status="firing" if firing else "resolved",
        labels={**labels, "severity": severity},
        summary=f"{severity if firing else 'resolved'}: feature drift on {subject} of fraud",
        description=f"feature '{subject}' drifted from the reference",
        starts_at=WINDOW.start,
        ends_at=None if firing else WINDOW.end,
        fingerprint=fingerprint(labels),
        value=0.4,
        threshold=0.1,
        window=WINDOW,
        repeated=repeated,
    )


def notification(notification_id: str, *alerts: Alert) -> Notification:
    return Notification(notification_id, "fraud", WINDOW, alerts)


@dataclass
class FakeIssue:
    id: int
    title: str
    body: str
    labels: list[str]
    comments: list[str] = field(default_factory=list)
    open: bool = True


class FakeService:
    """In-memory issues behind a tracker's endpoints. ``fail_with`` answers every call
    with that status; ``fail_once`` answers 500 to the first call it matches."""

    def __init__(self) -> None:
        self.issues: list[FakeIssue] = []
        self.calls: list[tuple[str, str]] = []
        self.fail_with: int | None = None
        self.fail_once: Callable[[str, str, Any], bool] | None = None
        self.lock = threading.Lock()

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        with self.lock:
            self.calls.append((method, path))
            if self.fail_with is not None:
                return self.fail_with, {"message": "the fake is down"}
            if self.fail_once is not None and self.fail_once(method, path, body):
                self.fail_once = None
                return 500, {"message": "the fake failed once"}
            return self.route(method, path, query, body)

    def authorized(self, headers: Message) -> bool:
        raise NotImplementedError

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        raise NotImplementedError

    def new_issue(self, title: str, body: str, labels: list[str]) -> FakeIssue:
        issue = FakeIssue(10_000 + len(self.issues) + 1, title, body, labels)
        self.issues.append(issue)
        return issue

    def issue(self, ref: str) -> FakeIssue | None:
        return next((i for i in self.issues if ref in {str(i.id), self.key(i)}), None)

    def key(self, issue: FakeIssue) -> str:
        return str(issue.id)


class Handler(BaseHTTPRequestHandler):
    service: FakeService

    def _handle(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.service.authorized(self.headers):
            status, answer = 401, {"message": "Bad credentials"}
        else:
            body = json.loads(raw) if raw else None
            status, answer = self.service.answer(self.command, url.path, parse_qs(url.query), body)
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _handle  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows failures, not access logs."""


def serve(service: FakeService, stack: ExitStack) -> str:
    """Serves ``service`` on a free port of 127.0.0.1 until ``stack`` closes."""
    handler = type("BoundHandler", (Handler,), {"service": service})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    stack.callback(stop)
    return f"http://127.0.0.1:{server.server_port}"


class FakeGithub(FakeService):
    """``/repos/acme/models/issues`` and its comments."""

    def __init__(self, push_access: bool = True) -> None:
        super().__init__()
        self.push_access = push_access

    def authorized(self, headers: Message) -> bool:
        return (
            headers.get("Authorization") == f"Bearer {TOKEN}"
            and headers.get("Accept") == "application/vnd.github+json"
            and headers.get("X-GitHub-Api-Version") == "2022-11-28"
        )

    def key(self, issue: FakeIssue) -> str:
        return str(issue.id - 10_000)  # the issue number

    def view(self, issue: FakeIssue) -> dict[str, Any]:
        return {
            "number": int(self.key(issue)),
            "title": issue.title,
            "body": issue.body,
            "labels": [{"name": name} for name in issue.labels],
            "state": "open" if issue.open else "closed",
            "comments": len(issue.comments),
        }

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        parts = path.split("/")
        if parts[:4] != ["", "repos", "acme", "models"] or parts[4:5] != ["issues"]:
            return 404, {"message": "Not Found"}
        rest = parts[5:]
        if not rest and method == "GET":
            wanted = set(query["labels"][0].split(","))
            state = query.get("state", ["open"])[0]
            found = [
                self.view(i)
                for i in reversed(self.issues)  # the newest first
                if wanted <= set(i.labels) and (state == "all" or i.open == (state == "open"))
            ]
            return 200, found[: int(query.get("per_page", ["30"])[0])]
        if not rest and method == "POST":
            labels = body["labels"] if self.push_access else []
            return 201, self.view(self.new_issue(body["title"], body["body"], labels))
        issue = self.issue(rest[0])
        if issue is None:
            return 404, {"message": "Not Found"}
        if rest[1:] == ["comments"] and method == "GET":
            size, page = int(query["per_page"][0]), int(query["page"][0])
            return 200, [{"body": c} for c in issue.comments[(page - 1) * size : page * size]]
        if rest[1:] == ["comments"] and method == "POST":
            issue.comments.append(body["body"])
            return 201, {"body": body["body"]}
        if not rest[1:] and method == "PATCH":
            issue.open = body["state"] == "open"
            return 200, self.view(issue)
        return 404, {"message": "Not Found"}


class FakeJira(FakeService):
    """Jira Cloud's REST API v2, or Jira Server's (no enhanced search) if not ``cloud``.

    Cloud's search reads an index that is ``consistent`` with the issues, or (if not)
    frozen at the last :meth:`reindex` except for the issues passed as ``reconcileIssues``.
    """

    TRANSITIONS = ({"id": "21", "name": "In Progress"}, {"id": "31", "name": "Done"})

    def __init__(self, cloud: bool = True, consistent: bool = True) -> None:
        super().__init__()
        self.cloud = cloud
        self.consistent = consistent
        self.indexed: dict[int, bool] = {}

    def authorized(self, headers: Message) -> bool:
        basic = base64.b64encode(f"{JIRA_USER}:{TOKEN}".encode()).decode()
        return headers.get("Authorization") == f"Basic {basic}"

    def key(self, issue: FakeIssue) -> str:
        return f"ML-{issue.id - 10_000}"

    def reindex(self) -> None:
        self.indexed = {i.id: i.open for i in self.issues}

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        if method == "POST" and path == "/rest/api/2/search/jql":
            return (200, self.search(body)) if self.cloud else (404, None)
        if method == "POST" and path == "/rest/api/2/search":
            return (410, {"errorMessages": ["removed"]}) if self.cloud else (200, self.search(body))
        if method == "POST" and path == "/rest/api/2/issue":
            fields = body["fields"]
            if fields["project"] != {"key": "ML"} or fields["issuetype"] != {"name": "Bug"}:
                return 400, {"errors": {"project": "unknown project or issue type"}}
            new = self.new_issue(fields["summary"], fields["description"], fields["labels"])
            return 201, {"id": str(new.id), "key": self.key(new)}
        match = re.fullmatch(r"/rest/api/2/issue/([\w-]+)/(comment|transitions)", path)
        issue = self.issue(match.group(1)) if match else None
        if match is None or issue is None:
            return 404, {"errorMessages": ["Issue does not exist"]}
        if match.group(2) == "comment" and method == "GET":
            newest_first = query.get("orderBy") == ["-created"]
            ordered = list(reversed(issue.comments)) if newest_first else issue.comments
            top = ordered[: int(query["maxResults"][0])]
            return 200, {"comments": [{"body": c} for c in top], "total": len(issue.comments)}
        if match.group(2) == "comment" and method == "POST":
            issue.comments.append(body["body"])
            return 201, {"body": body["body"]}
        if method == "GET":
            return 200, {"transitions": list(self.TRANSITIONS) if issue.open else []}
        if body["transition"]["id"] not in {t["id"] for t in self.TRANSITIONS}:
            return 400, {"errorMessages": ["no such transition"]}
        issue.open = body["transition"]["id"] != "31"
        return 204, None

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        jql = re.fullmatch(
            r'project = "ML" AND labels = "([\w-]+)" AND statusCategory != Done '
            r"ORDER BY created DESC",
            body["jql"],
        )
        assert jql is not None, body["jql"]
        if self.consistent:
            self.reindex()
        fresh = set(body.get("reconcileIssues", []))
        found = [
            {"id": str(i.id), "key": self.key(i), "fields": {"description": i.body}}
            for i in reversed(self.issues)
            if jql.group(1) in i.labels
            and (i.open if i.id in fresh else self.indexed.get(i.id, False))
        ]
        return {"issues": found[: body["maxResults"]], "isLast": True}


Make = Callable[..., tuple[TicketSink, FakeService]]


@pytest.fixture
def make() -> Iterator[Make]:
    """Builds a sink of ``kind`` against a fresh fake of its tracker."""
    with ExitStack() as stack:

        def build(
            kind: str, fake: FakeService | None = None, token: str = TOKEN, **settings: Any
        ) -> tuple[TicketSink, FakeService]:
            sink: TicketSink
            if kind == "github":
                fake = fake or FakeGithub()
                github = GithubIssueSinkSettings(
                    kind="github_issue",
                    repository="acme/models",
                    token=token,
                    api_url=serve(fake, stack),
                    timeout=5,
                    **settings,
                )
                sink = github_issue_sink("issues", github)
            else:
                fake = fake or FakeJira()
                jira = JiraSinkSettings(
                    kind="jira",
                    url=serve(fake, stack) + "/",
                    project="ML",
                    user=JIRA_USER,
                    token=token,
                    timeout=5,
                    **{"resolve_transition": "Done", **settings},
                )
                sink = jira_sink("jira", jira)
            stack.callback(sink.close)
            return sink, fake

        yield build


KINDS = pytest.mark.parametrize("kind", ["github", "jira"])


@KINDS
def test_firing_opens_one_issue_per_alert_labelled_with_its_fingerprint(
    make: Make, kind: str
) -> None:
    sink, fake = make(kind)
    amount, country = alert(subject="amount"), alert(subject="country")
    assert isinstance(sink.send(notification("n1", amount, country)), Delivered)

    assert [i.labels for i in fake.issues] == [
        ["streamwatch", f"streamwatch-{amount.fingerprint}"],
        ["streamwatch", f"streamwatch-{country.fingerprint}"],
    ]
    issue = fake.issues[0]
    assert issue.open
    assert issue.comments == []
    assert issue.title == "[streamwatch] warning: feature drift on amount of fraud (model fraud)"
    for part in [
        "feature 'amount' drifted from the reference",
        "Value",
        "0.4 (threshold 0.1)",
        "2026-11-22T00:00:00Z to 2026-11-22T01:00:00Z",
        "subject=amount",
        "n1",
    ]:
        assert part in issue.body


@KINDS
def test_repeats_and_escalations_comment_on_the_open_issue(make: Make, kind: str) -> None:
    sink, fake = make(kind)
    assert isinstance(sink.send(notification("n1", alert(severity="warning"))), Delivered)
    assert isinstance(sink.send(notification("n2", alert(severity="critical"))), Delivered)
    repeat = alert(severity="critical", repeated=True)
    assert isinstance(sink.send(notification("n3", repeat)), Delivered)

    [issue] = fake.issues
    assert issue.open
    assert len(issue.comments) == 2
    assert "CRITICAL" in issue.comments[0]
    assert "n2" in issue.comments[0]
    assert "(still firing)" in issue.comments[1]
    assert "n3" in issue.comments[1]


@KINDS
def test_a_notification_sent_again_opens_and_says_nothing_twice(make: Make, kind: str) -> None:
    sink, fake = make(kind)
    first = notification("n1", alert())
    repeat = notification("n2", alert(repeated=True))
    for n in [first, first, repeat, repeat]:
        assert isinstance(sink.send(n), Delivered)

    [issue] = fake.issues
    assert len(issue.comments) == 1
    assert "n2" in issue.comments[0]


@KINDS
def test_a_notification_retried_whole_after_a_partial_failure(make: Make, kind: str) -> None:
    sink, fake = make(kind)
    # The second alert's issue fails to open, after the first alert's has opened.
    fake.fail_once = lambda method, path, body: method == "POST" and "country" in json.dumps(body)
    n = notification("n1", alert(subject="amount"), alert(subject="country"))

    failed = sink.send(n)
    assert isinstance(failed, DeliveryFailed)
    assert failed.retryable
    assert len(fake.issues) == 1
    assert isinstance(sink.send(n), Delivered)
    assert len(fake.issues) == 2
    assert [i.comments for i in fake.issues] == [[], []]


@KINDS
def test_resolving_comments_and_closes_and_a_new_firing_opens_a_new_issue(
    make: Make, kind: str
) -> None:
    sink, fake = make(kind)
    resolved = notification("n2", alert(status="resolved"))
    assert isinstance(sink.send(notification("n1", alert())), Delivered)
    assert isinstance(sink.send(resolved), Delivered)
    assert isinstance(sink.send(resolved), Delivered)  # a retry: nothing open, nothing to do

    [issue] = fake.issues
    assert not issue.open
    assert len(issue.comments) == 1
    assert "RESOLVED" in issue.comments[0]
    assert "n2" in issue.comments[0]

    assert isinstance(sink.send(notification("n3", alert())), Delivered)
    assert [i.open for i in fake.issues] == [False, True]


@KINDS
def test_a_resolved_alert_without_an_open_issue_is_delivered(make: Make, kind: str) -> None:
    sink, fake = make(kind)
    assert isinstance(sink.send(notification("n1", alert(status="resolved"))), Delivered)
    assert fake.issues == []


@KINDS
def test_a_server_error_is_retryable(make: Make, kind: str) -> None:
    sink, fake = make(kind)
    fake.fail_with = 500
    failed = sink.send(notification("n1", alert()))
    assert isinstance(failed, DeliveryFailed)
    assert failed.retryable
    assert "500" in failed.reason
    assert fake.issues == []


@KINDS
def test_bad_credentials_are_not_retryable_and_not_told(make: Make, kind: str) -> None:
    sink, fake = make(kind, token="tok-wrong-secret")
    failed = sink.send(notification("n1", alert()))
    assert isinstance(failed, DeliveryFailed)
    assert not failed.retryable
    assert "401" in failed.reason
    assert "tok-wrong-secret" not in failed.reason
    assert fake.issues == []


def test_github_keeps_the_issue_open_unless_told_to_close_it(make: Make) -> None:
    sink, fake = make("github", close_on_resolve=False)
    assert isinstance(sink.send(notification("n1", alert())), Delivered)
    assert isinstance(sink.send(notification("n2", alert(status="resolved"))), Delivered)
    [issue] = fake.issues
    assert issue.open
    assert "RESOLVED" in issue.comments[-1]
    assert ("PATCH", "/repos/acme/models/issues/1") not in fake.calls


def test_github_reads_the_newest_comments_of_a_long_issue(make: Make) -> None:
    sink, fake = make("github")
    assert isinstance(sink.send(notification("n1", alert())), Delivered)
    fake.issues[0].comments += [f"a person's comment {i}" for i in range(130)]
    repeat = notification("n2", alert(repeated=True))
    assert isinstance(sink.send(repeat), Delivered)
    assert isinstance(sink.send(repeat), Delivered)  # n2 is on the second page
    assert sum("n2" in c for c in fake.issues[0].comments) == 1


def test_github_labels_dropped_for_want_of_push_access_fail_for_good(make: Make) -> None:
    sink, fake = make("github", fake=FakeGithub(push_access=False))
    failed = sink.send(notification("n1", alert()))
    assert isinstance(failed, DeliveryFailed)
    assert not failed.retryable
    assert "push access" in failed.reason
    assert len(fake.issues) == 1


def test_jira_writes_wiki_markup() -> None:
    assert wiki("**CRITICAL** `amount` and `n1`.") == "*CRITICAL* {{amount}} and {{n1}}."


def test_jira_finds_its_new_issue_before_the_search_index_does(make: Make) -> None:
    sink, fake = make("jira", fake=FakeJira(consistent=False))
    first = notification("n1", alert())
    assert isinstance(sink.send(first), Delivered)
    assert isinstance(sink.send(first), Delivered)  # a retry, before the index caught up
    assert isinstance(sink.send(notification("n2", alert(status="resolved"))), Delivered)
    assert isinstance(sink.send(notification("n3", alert())), Delivered)  # fires again

    assert [i.open for i in fake.issues] == [False, True]
    assert len(fake.issues[0].comments) == 1


def test_jira_server_is_searched_the_old_way(make: Make) -> None:
    sink, fake = make("jira", fake=FakeJira(cloud=False))
    assert isinstance(sink.send(notification("n1", alert())), Delivered)
    assert isinstance(sink.send(notification("n2", alert(repeated=True))), Delivered)
    [issue] = fake.issues
    assert len(issue.comments) == 1
    assert fake.calls.count(("POST", "/rest/api/2/search/jql")) == 1  # asked once, then not
    assert fake.calls.count(("POST", "/rest/api/2/search")) == 2


def test_jira_without_a_resolve_transition_only_comments(make: Make) -> None:
    sink, fake = make("jira", resolve_transition=None)
    assert isinstance(sink.send(notification("n1", alert())), Delivered)
    assert isinstance(sink.send(notification("n2", alert(status="resolved"))), Delivered)
    [issue] = fake.issues
    assert issue.open
    assert "RESOLVED" in issue.comments[-1]
    assert not any(path.endswith("/transitions") for _, path in fake.calls)


def test_jira_transition_is_found_by_name_or_the_failure_names_those_offered(
    make: Make,
) -> None:
    sink, fake = make("jira", resolve_transition="Close")
    assert isinstance(sink.send(notification("n1", alert())), Delivered)
    failed = sink.send(notification("n2", alert(status="resolved")))
    assert isinstance(failed, DeliveryFailed)
    assert not failed.retryable
    assert "'Close'" in failed.reason
    assert "Done, In Progress" in failed.reason
    assert fake.issues[0].open
