"""What a ticket sink asks of an issue tracker: the :class:`Tracker` interface and the
:class:`Issue` it hands back. Jira and GitHub Issues implement it; neither knows the sink."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Issue:
    """An open issue: its key (a GitHub number, a Jira key), its body, and how many
    comments it has where the tracker says so."""

    key: str
    body: str
    comments: int = 0


class Tracker(Protocol):
    """The few calls a ticket sink makes. Each raises
    :class:`~streamwatch.sinks.http.HttpError` on failure; texts are markdown, a tracker
    converts them to its own markup."""

    def find_open(self, label: str) -> Issue | None: ...

    def create(self, title: str, body: str, labels: list[str]) -> None: ...

    def recent_comments(self, issue: Issue) -> list[str]: ...

    def comment(self, issue: Issue, text: str) -> None: ...

    def resolve(self, issue: Issue) -> None: ...

    def close(self) -> None: ...
