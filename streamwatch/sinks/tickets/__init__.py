"""``kind=jira`` and ``kind=github_issue``: one issue per alert in a tracker.

:mod:`.sink` holds what both share (one :class:`TicketSink`, written against the
:class:`Tracker` interface of :mod:`.tracker`); :mod:`.jira` and :mod:`.github` are the
two trackers, which know nothing of the sink. This module only puts them together.
"""

from __future__ import annotations

from streamwatch.config import GithubIssueSinkSettings, JiraSinkSettings
from streamwatch.sinks.tickets.github import GithubIssues
from streamwatch.sinks.tickets.jira import JiraIssues
from streamwatch.sinks.tickets.sink import TicketSink
from streamwatch.sinks.tickets.tracker import Issue, Tracker

__all__ = ["Issue", "TicketSink", "Tracker", "github_issue_sink", "jira_sink"]


def jira_sink(name: str, settings: JiraSinkSettings) -> TicketSink:
    """The sink of a ``jira`` setting."""
    return TicketSink(name, JiraIssues(name, settings), settings.timeout)


def github_issue_sink(name: str, settings: GithubIssueSinkSettings) -> TicketSink:
    """The sink of a ``github_issue`` setting."""
    return TicketSink(name, GithubIssues(name, settings), settings.timeout)
