"""HTTP delivery's failures name no secret: not the URL's, not the credentials sent,
not in the reason and not in the log line the dispatcher writes of it."""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from streamwatch.config import RetrainSinkSettings, WebhookSinkSettings
from streamwatch.observe.logs import JsonFormatter
from streamwatch.sinks import DeliveryFailed
from streamwatch.sinks.retrain import RetrainSink
from streamwatch.sinks.webhook import WebhookSink
from tests.unit.sinks.test_sinks import notification


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def echoing() -> Iterator[str]:
    """A server answering 404 with the request line and headers it got, as some do."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = f"no hook at {self.path}\n{self.headers}".encode()
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def json_line(logger_name: str, emit: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        assert callable(emit)
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_webhook_to_an_unreachable_url_logs_no_secret() -> None:
    url = f"http://bot:pwSEKRIT@127.0.0.1:{closed_port()}/hooks/idSEKRIT?token=tokSEKRIT"
    settings = WebhookSinkSettings(kind="webhook", url=url, timeout=2.0)
    sink = WebhookSink("ops", settings)
    try:
        result = sink.send(notification())
    finally:
        sink.close()
    assert isinstance(result, DeliveryFailed)
    assert result.retryable
    assert "SEKRIT" not in result.reason
    # What requests itself says of it names the URL's path and query:
    with pytest.raises(requests.ConnectionError) as raised:
        requests.post(url, timeout=2.0)
    assert "SEKRIT" in str(raised.value)

    def emit(logger: logging.Logger) -> None:
        # As the dispatcher logs a failed attempt, and a sink that raised.
        logger.warning(
            "notification not delivered, will retry",
            extra={"sink": "ops", "reason": result.reason, "url": settings.url},
        )
        try:
            raise raised.value
        except requests.ConnectionError:
            logger.exception("sink raised", extra={"sink": "ops"})

    text = json_line("streamwatch.alerting.dispatcher", emit)
    assert "notification not delivered" in text
    assert "ConnectionError" in text
    assert "SEKRIT" not in text


def test_an_error_page_echoing_the_request_is_scrubbed() -> None:
    with echoing() as address:
        webhook = WebhookSink(
            "ops",
            WebhookSinkSettings(
                kind="webhook",
                url=f"http://{address}/webhook/idSEKRIT00000?v=1&s=sgSEKRIT",
                headers={"X-Api-Key": "hdrSEKRIT"},
            ),
        )
        retrain = RetrainSink(
            "retrain",
            RetrainSinkSettings(
                kind="retrain",
                url=f"http://{address}/api/hooks/abcSEKRIT",
                token="bearerSEKRIT",
            ),
        )
        try:
            failures = [webhook.send(notification()), retrain.send(notification())]
        finally:
            webhook.close()
            retrain.close()
    for failure in failures:
        assert isinstance(failure, DeliveryFailed)
        assert "answered 404" in failure.reason
        assert "no hook at" in failure.reason  # the page is kept, its secrets are not
        assert "SEKRIT" not in failure.reason
