"""What the apprise sink hands apprise: markdown to chat, HTML to email (the SMTP round
trip is in tests/integration/test_sink_apprise.py)."""

from __future__ import annotations

import apprise
import pytest
from apprise.conversion import convert_between

from streamwatch.sinks import render
from streamwatch.sinks.apprise import html, takes_html
from tests.factories import drift_notification

# apprise's first URL loads every plugin; the email one imports imghdr (as in the sink).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mailto://mailpit:1025?from=streamwatch@example.com&to=ops@example.com", True),
        ("mailtos://user:pw@example.com?to=ops@example.com", True),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", False),
        ("json://127.0.0.1:9/", False),
    ],
)
def test_email_takes_html_and_chat_takes_markdown(url: str, expected: bool) -> None:
    service = apprise.Apprise.instantiate(url)
    assert service is not None
    assert takes_html(service) is expected


def test_code_spans_stay_in_their_line_of_the_plain_text() -> None:
    body = render.body(drift_notification("5e1f" * 8, "fraud", ("amount",)))
    assert "`fraud`" in body  # markdown, as chat gets it
    as_html = html(body)
    assert "<code>" not in as_html
    assert '<span style="font-family: monospace">fraud</span>' in as_html
    # What apprise's email plugin makes the plain-text part of.
    html_to_text = apprise.NotifyFormat.HTML, apprise.NotifyFormat.TEXT
    text: str = convert_between(*html_to_text, as_html)  # type: ignore[no-untyped-call]
    lines = text.splitlines()
    assert lines[0].startswith("Model fraud, window 2026-")
    assert lines[2].startswith("- CRITICAL feature_drift · amount · wasserstein = ")
    assert lines[-1] == f"Notification {'5e1f' * 8}."
