"""A real HTTP receiver on 127.0.0.1 for sink tests, and Standard Webhooks
verification written from the spec (not with the signing library)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify(secret: str, headers: Mapping[str, str], body: bytes, tolerance: float = 300) -> bool:
    """Standard Webhooks verification, written from the spec."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    if not msg_id or not timestamp or abs(time.time() - int(timestamp)) > tolerance:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(sig, expected)
        for version, _, sig in (
            s.partition(",") for s in headers.get("webhook-signature", "").split()
        )
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


Reply = tuple[int, dict[str, str]]


@dataclass
class Receiver:
    """What a real HTTP server in a thread received; it answers with ``respond``."""

    respond: Callable[[Received], Reply]
    url: str = ""
    requests: list[Received] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (the timeout test) is expected; anything else is not.
        if not isinstance(sys.exception(), ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def receiving(respond: Callable[[Received], Reply], port: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(respond)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            receiver.requests.append(got)
            status, extra = receiver.respond(got)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/streamwatch"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def verifying(secret: str) -> Callable[[Received], Reply]:
    def respond(got: Received) -> Reply:
        return (204, {}) if verify(secret, got.headers, got.body) else (401, {})

    return respond
