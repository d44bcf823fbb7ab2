"""The apprise sink sending email to a real SMTP server (aiosmtpd) on 127.0.0.1, and
failing within its timeout, without revealing the password, when there is none."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from pydantic import SecretStr, ValidationError

from streamwatch.alerting.policy import Notification
from streamwatch.config import AppriseSinkSettings
from streamwatch.sinks.apprise import AppriseSink
from streamwatch.sinks.base import Delivered, DeliveryFailed
from tests.factories import drift_notification
from tests.kafka_local import free_port

pytestmark = pytest.mark.integration

PASSWORD = "pw-9f3Kq-never-logged"


def notification(model: str = "fraud", subject: str = "amount") -> Notification:
    return drift_notification("5e1f" * 8, model, (subject,))


def mailto(port: int, password: str = PASSWORD) -> SecretStr:
    # mailto:// is plain SMTP (apprise's "insecure" mode); mailtos:// would use TLS.
    return SecretStr(
        f"mailto://ops-bot:{password}@127.0.0.1:{port}"
        "?to=ops@example.com&from=streamwatch@example.com"
    )


def settings(*urls: SecretStr, timeout: float = 5.0) -> AppriseSinkSettings:
    return AppriseSinkSettings(kind="apprise", urls=urls, timeout=timeout)


@dataclass
class Mailbox:
    """What the SMTP server received: messages with their envelopes, and logins."""

    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=True)

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(e.original_content or b"", policy=email.policy.default)
            for e in self.envelopes
        ]


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    # AUTH over plain SMTP: only on 127.0.0.1, to see the credentials arrive.
    server = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
    )
    server.start()
    try:
        yield mailbox, port
    finally:
        server.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger, apprise's TRACE level included."""
    caplog.set_level(1)
    return caplog


def apprise_logged(logs: pytest.LogCaptureFixture) -> bool:
    return any(r.name == "apprise" for r in logs.records)


def text(message: EmailMessage) -> str:
    return "\n".join(
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    )


def test_the_alert_arrives_by_email(
    smtp: tuple[Mailbox, int], logs: pytest.LogCaptureFixture
) -> None:
    mailbox, port = smtp
    sink = AppriseSink("ops-mail", settings(mailto(port)))
    try:
        result = sink.send(notification(model="fraud", subject="amount"))
    finally:
        sink.close()

    assert result == Delivered("ops-mail")
    assert mailbox.logins == [("ops-bot", PASSWORD)]
    [envelope] = mailbox.envelopes
    assert envelope.mail_from == "streamwatch@example.com"
    assert envelope.rcpt_tos == ["ops@example.com"]
    [message] = mailbox.messages()
    assert message["Subject"].startswith("[streamwatch] CRITICAL: model fraud, 1 alert")
    body = text(message)
    assert "amount" in body
    assert "feature_drift" in body
    assert "5e1f" * 8 in body  # the notification id
    assert apprise_logged(logs)
    assert PASSWORD not in logs.text


def test_a_server_that_is_down_is_a_retryable_failure(logs: pytest.LogCaptureFixture) -> None:
    nobody = free_port()  # nothing listens here
    sink = AppriseSink("ops-mail", settings(mailto(nobody), timeout=5.0))
    try:
        started = time.monotonic()
        result = sink.send(notification())
        elapsed = time.monotonic() - started
    finally:
        sink.close()

    assert isinstance(result, DeliveryFailed)
    assert result.sink == "ops-mail"
    assert result.retryable
    assert elapsed < 5.0
    assert PASSWORD not in result.reason
    assert apprise_logged(logs)  # it did log the connection failure
    assert PASSWORD not in logs.text


def test_a_chat_service_that_is_down_does_not_keep_the_email_back(
    smtp: tuple[Mailbox, int],
) -> None:
    mailbox, port = smtp
    chat = SecretStr(f"json://127.0.0.1:{free_port()}/hook")  # nothing listens: down
    sink = AppriseSink("ops", settings(chat, mailto(port)))
    try:
        result = sink.send(notification(model="fraud", subject="amount"))
    finally:
        sink.close()

    assert isinstance(result, DeliveryFailed)  # tried again later, as a whole
    assert result.retryable
    [message] = mailbox.messages()  # the email went out all the same
    assert message["Subject"].startswith("[streamwatch] CRITICAL: model fraud")


def test_a_server_that_never_answers_fails_at_the_timeout(logs: pytest.LogCaptureFixture) -> None:
    # Connections complete in the backlog, but no greeting ever comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        sink = AppriseSink("ops-mail", settings(mailto(silent.getsockname()[1]), timeout=1.0))
        try:
            started = time.monotonic()
            first = sink.send(notification())
            elapsed = time.monotonic() - started
            # apprise still waits for the greeting (15 s): the next send does not queue.
            started = time.monotonic()
            second = sink.send(notification())
            elapsed_second = time.monotonic() - started
        finally:
            sink.close()

    assert first == DeliveryFailed("ops-mail", "no answer within 1 s", retryable=True)
    assert 1.0 <= elapsed < 2.0
    assert second == DeliveryFailed(
        "ops-mail", "an earlier delivery is still running", retryable=True
    )
    assert elapsed_second < 0.5
    assert PASSWORD not in logs.text


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (f"nosuchservice://admin:{PASSWORD}@example.com/x", "(nosuchservice://"),
        (f"mailto://admin:{PASSWORD}@", "(mailto://"),
        (PASSWORD, "does not start with its scheme"),
    ],
)
def test_an_unusable_url_is_refused_by_the_settings_naming_its_scheme_only(
    url: str, named: str, logs: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValidationError) as raised:  # at load: check-config says it too
        settings(mailto(free_port()), SecretStr(url))

    message = str(raised.value)
    assert "URL 2" in message
    assert named in message
    assert PASSWORD not in message
    assert PASSWORD not in logs.text


def test_the_plain_text_part_keeps_code_spans_in_their_line(smtp: tuple[Mailbox, int]) -> None:
    # apprise's HTML-to-text conversion puts <code> on lines of its own; the sink hands
    # email services HTML without it.
    mailbox, port = smtp
    sink = AppriseSink("ops-mail", settings(mailto(port)))
    try:
        assert sink.send(notification(model="fraud", subject="amount")) == Delivered("ops-mail")
    finally:
        sink.close()

    [message] = mailbox.messages()
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None
    assert rich is not None
    lines = plain.get_content().splitlines()
    assert lines[0].startswith("Model fraud, window ")
    [alert] = [line for line in lines if "feature_drift" in line]
    assert "feature_drift · amount · " in alert
    assert lines[-1] == f"Notification {'5e1f' * 8}."
    assert '<span style="font-family: monospace">amount</span>' in rich.get_content()
