"""JSON log lines: one object a line, secrets masked in every field."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from streamwatch.observe.logs import SLOW_TASK_LOGGER, FirstOnly, JsonFormatter, configure
from streamwatch.observe.redact import text

URL = "https://ops:pwSEKRIT@alerts.example.com/hooks/idSEKRIT?token=tokSEKRIT"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("streamwatch.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_a_line_is_json_with_the_extra_fields(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info("stopped", extra={"events": 3, "rate": 0.5, "sink": "ops"})
    line = json.loads(stream.getvalue())
    assert (line["level"], line["message"], line["events"], line["sink"]) == (
        "info",
        "stopped",
        3,
        "ops",
    )


def test_secrets_are_masked_in_the_message_extras_and_exception(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged

    class Opaque:
        def __str__(self) -> str:
            return f"an object naming {URL}"

    try:
        raise RuntimeError(f"cannot POST to {URL}: refused")
    except RuntimeError:
        logger.exception(
            "sink raised calling %s",
            URL,
            extra={
                "url": URL,
                "attempts": [{"to": URL}, ("api_key=SEKRIT",)],
                "object": Opaque(),
            },
        )
    text = stream.getvalue()
    line = json.loads(text)
    assert "SEKRIT" not in text
    assert line["url"] == "https://***@alerts.example.com/hooks/***?token=***"
    assert line["attempts"] == [{"to": line["url"]}, ["api_key=***"]]
    assert "RuntimeError: cannot POST to https://***@alerts.example.com" in line["exception"]
    assert line["object"] == f"an object naming {line['url']}"


def test_a_kafka_error_code_is_not_taken_for_a_secret() -> None:
    assert text('KafkaError{code=_TRANSPORT,val=-195,str="1/1 brokers are down"}') == (
        'KafkaError{code=_TRANSPORT,val=-195,str="1/1 brokers are down"}'
    )


def test_kafka_pythons_slow_task_warning_is_logged_once(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    once = FirstOnly("is blocking the event loop", "logged once per process")
    logger.addFilter(once)
    try:
        for elapsed in (0.142, 0.231, 0.118):
            # As kafka.net.selector words it (formatted before it is logged).
            logger.warning(
                f"Task <Task coordinator heartbeat> ran for {elapsed:.3f}s (>0.100s threshold). "
                "It is blocking the event loop -- likely a tight sync loop inside a coroutine. "
                "Other pollers will time out."
            )
            logger.warning("Heartbeat session expired")
    finally:
        logger.removeFilter(once)
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert len(messages) == 4
    assert messages[0].startswith("Task <Task coordinator heartbeat> ran for 0.142s")
    assert messages[0].endswith("Other pollers will time out. (logged once per process)")
    assert messages[1:] == ["Heartbeat session expired"] * 3


def test_configure_filters_the_slow_task_warning_of_kafka_python() -> None:
    root, ours = logging.getLogger(), logging.getLogger("streamwatch")
    kafka = logging.getLogger(SLOW_TASK_LOGGER)
    handlers, levels, filters = root.handlers[:], (root.level, ours.level), kafka.filters[:]
    try:
        configure("INFO", io.StringIO())
        configure("INFO", io.StringIO())
        assert len([f for f in kafka.filters if isinstance(f, FirstOnly)]) == 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
        kafka.filters[:] = filters
