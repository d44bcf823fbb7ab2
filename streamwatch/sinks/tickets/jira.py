"""``kind=jira``: one Jira issue per alert, through REST API v2 (plain wiki-markup text).

Jira Cloud has removed ``/rest/api/2/search`` (410 Gone) in favour of
``/rest/api/2/search/jql``, which Jira Server and Data Center do not have: the sink
asks the new one first and falls back to the old one where it is not found. The new
search is eventually consistent, seconds behind the issues; the issues this sink has
just created or closed are passed as ``reconcileIssues`` so that a retry right after
a create finds the issue instead of opening a second one.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

import requests

from streamwatch.config import JiraSinkSettings
from streamwatch.sinks.base import DeliveryFailed
from streamwatch.sinks.http import Http, HttpError
from streamwatch.sinks.tickets.tracker import Issue

RECENT = 50  # comments read back to tell whether a notification was already told
RECONCILE = 50  # Jira's limit on reconcileIssues


class JiraIssues:
    """The issues of one Jira project. An :class:`Issue` key is Jira's numeric issue id."""

    def __init__(self, sink: str, settings: JiraSinkSettings) -> None:
        self.sink = sink
        self.api = f"{settings.url.rstrip('/')}/rest/api/2"
        self.project = settings.project
        self.issue_type = settings.issue_type
        self.transition = settings.resolve_transition
        self.http = Http(sink, settings.timeout, {"Accept": "application/json"})
        self.http.session.auth = (settings.user, settings.token.get_secret_value())
        self.legacy_search = False
        self.touched: deque[int] = deque(maxlen=RECONCILE)

    def find_open(self, label: str) -> Issue | None:
        jql = (
            f'project = "{self.project}" AND labels = "{label}" '
            "AND statusCategory != Done ORDER BY created DESC"
        )
        issues = self._search({"jql": jql, "fields": ["description"], "maxResults": 1})
        if not issues:
            return None
        return Issue(str(issues[0]["id"]), issues[0]["fields"].get("description") or "")

    def _search(self, query: dict[str, Any]) -> list[Any]:
        if not self.legacy_search:
            reconcile = list(dict.fromkeys(self.touched))
            url = f"{self.api}/search/jql"
            found = self.http.call(
                "POST", url, ok=(404,), json={**query, "reconcileIssues": reconcile}
            )
            if found.status_code != 404:
                return _issues(found)
            self.legacy_search = True  # Jira Server or Data Center
        return _issues(self.http.call("POST", f"{self.api}/search", json=query))

    def create(self, title: str, body: str, labels: list[str]) -> None:
        fields = {
            "project": {"key": self.project},
            "summary": title,
            "description": wiki(body),
            "issuetype": {"name": self.issue_type},
            "labels": labels,
        }
        created = self.http.call("POST", f"{self.api}/issue", json={"fields": fields}).json()
        self.touched.append(int(created["id"]))

    def recent_comments(self, issue: Issue) -> list[str]:
        params = {"orderBy": "-created", "maxResults": str(RECENT)}
        url = f"{self.api}/issue/{issue.key}/comment"
        found = self.http.call("GET", url, params=params).json()
        return [str(c.get("body") or "") for c in found["comments"]]

    def comment(self, issue: Issue, text: str) -> None:
        url = f"{self.api}/issue/{issue.key}/comment"
        self.http.call("POST", url, json={"body": wiki(text)})

    def resolve(self, issue: Issue) -> None:
        if self.transition is None:
            return
        url = f"{self.api}/issue/{issue.key}/transitions"
        offered = self.http.call("GET", url).json()["transitions"]
        wanted = self.transition.casefold()
        ids = [str(t["id"]) for t in offered if str(t["name"]).casefold() == wanted]
        if not ids:
            names = ", ".join(sorted(str(t["name"]) for t in offered)) or "none"
            reason = (
                f"issue {issue.key} offers no transition named {self.transition!r} "
                f"from its status (it offers: {names})"
            )
            raise HttpError(DeliveryFailed(self.sink, reason, retryable=False))
        self.http.call("POST", url, json={"transition": {"id": ids[0]}})
        self.touched.append(int(issue.key))

    def close(self) -> None:
        self.http.close()


def _issues(response: requests.Response) -> list[Any]:
    return list(response.json()["issues"])


def wiki(markdown: str) -> str:
    """The little markdown the sinks write (bold, code) in Jira's wiki markup."""
    text = re.sub(r"\*\*(.+?)\*\*", r"*\1*", markdown)
    return re.sub(r"`([^`\n]+)`", r"{{\1}}", text)
