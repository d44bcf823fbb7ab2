"""``kind=github_issue``: one GitHub issue per alert, through the REST API.

The open issue of an alert is found by listing the repository's open issues with its
label, which, unlike the search API, sees an issue as soon as it is created.
"""

from __future__ import annotations

import math

from streamwatch.config import GithubIssueSinkSettings
from streamwatch.sinks.base import DeliveryFailed
from streamwatch.sinks.http import Http, HttpError
from streamwatch.sinks.tickets.tracker import Issue

API_VERSION = "2022-11-28"
PAGE = 100  # GitHub's largest page


class GithubIssues:
    """The issues of one repository."""

    def __init__(self, sink: str, settings: GithubIssueSinkSettings) -> None:
        self.sink = sink
        self.repo = f"{settings.api_url.rstrip('/')}/repos/{settings.repository}"
        self.close_on_resolve = settings.close_on_resolve
        headers = {
            "Authorization": f"Bearer {settings.token.get_secret_value()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        self.http = Http(sink, settings.timeout, headers)

    def find_open(self, label: str) -> Issue | None:
        params = {"labels": label, "state": "open", "per_page": str(PAGE)}
        found = self.http.call("GET", f"{self.repo}/issues", params=params).json()
        # The newest first; pull requests are listed as issues too.
        for item in found:
            if "pull_request" not in item:
                return Issue(str(item["number"]), item.get("body") or "", int(item["comments"]))
        return None

    def create(self, title: str, body: str, labels: list[str]) -> None:
        payload = {"title": title, "body": body, "labels": labels}
        created = self.http.call("POST", f"{self.repo}/issues", json=payload).json()
        kept = {label["name"] for label in created.get("labels", [])}
        if not set(labels) <= kept:
            # GitHub drops the labels of a token without push access, silently; without
            # them every notification would open another issue.
            reason = (
                f"GitHub dropped the labels of new issue #{created['number']}: "
                "the token needs push access (Issues: write) to label issues"
            )
            raise HttpError(DeliveryFailed(self.sink, reason, retryable=False))

    def recent_comments(self, issue: Issue) -> list[str]:
        # Comments are listed oldest first: the last page holds the recent ones.
        last = max(1, math.ceil(issue.comments / PAGE))
        params = {"per_page": str(PAGE), "page": str(last)}
        url = f"{self.repo}/issues/{issue.key}/comments"
        return [str(c.get("body") or "") for c in self.http.call("GET", url, params=params).json()]

    def comment(self, issue: Issue, text: str) -> None:
        self.http.call("POST", f"{self.repo}/issues/{issue.key}/comments", json={"body": text})

    def resolve(self, issue: Issue) -> None:
        if self.close_on_resolve:
            payload = {"state": "closed", "state_reason": "completed"}
            self.http.call("PATCH", f"{self.repo}/issues/{issue.key}", json=payload)

    def close(self) -> None:
        self.http.close()
