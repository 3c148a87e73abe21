"""Our own logs: a short human line on a terminal, JSON lines elsewhere (LOG_FORMAT)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import time

import pytest

from logpipe.core.logging import HumanFormatter, JsonFormatter, PeriodicCount, configure_logging
from logpipe.core.settings import CommonSettings

ANSI = re.compile(r"\x1b\[[0-9;]*m")
CREATED = 1_780_000_000.25  # a fixed moment, so the clock column is known


@pytest.fixture(autouse=True)
def restore_logging():
    """configure_logging rewires the root logger: put back pytest's."""
    root = logging.getLogger()
    saved = {name: (logger.handlers[:], logger.level, logger.propagate)
             for name, logger in [("", root)] + [(n, logging.getLogger(n)) for n in
                                                 ("aiokafka", "uvicorn.access",
                                                  "httpx", "httpcore", "kafka")]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name) if name else root
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


class Terminal:
    """A pseudo-terminal: what a process writes to `stream` arrives at `read()` as on a screen."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.stream = os.fdopen(slave, "w", buffering=1)

    def read(self) -> str:
        self.stream.flush()
        chunks = []
        os.set_blocking(self.master, False)
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode().replace("\r\n", "\n")

    def close(self) -> None:
        self.stream.close()
        os.close(self.master)


@pytest.fixture
def terminal():
    term = Terminal()
    yield term
    term.close()


def record(name: str, level: int, message: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    item = logging.LogRecord(name, level, __file__, 1, message, args, exc_info)
    item.created = CREATED
    item.__dict__.update(extra)
    return item


def clock() -> str:
    return time.strftime("%H:%M:%S", time.localtime(CREATED))


def test_human_line_is_time_level_service_message_and_fields():
    formatter = HumanFormatter("logpipe")
    line = formatter.format(record("logpipe.ingest.handlers", logging.WARNING, "batch of %d rows failed", 500,
                                   topic="raw-logs", reason="connection refused", counts={"dlq": 2}))
    assert line == (f"{clock()} WARN  ingest     batch of 500 rows failed  "
                    'topic=raw-logs reason="connection refused" counts={"dlq":2}')
    assert "\x1b" not in line


@pytest.mark.parametrize(("logger", "column"), [
    ("logpipe.vectorizer.handlers", "vectorizer"), ("logpipe.core.broker", "broker"), ("logpipe.runner", "logpipe"),
    ("uvicorn.error", "uvicorn"), ("logpipe.gateway", "gateway"),
])
def test_human_line_names_the_service_that_logged(logger, column):
    line = HumanFormatter("logpipe").format(record(logger, logging.INFO, "hello"))
    assert line.split()[2] == column


def test_human_line_shows_the_traceback_and_hides_uvicorns_colour_copy():
    try:
        raise KeyError("missing")
    except KeyError:
        line = HumanFormatter("analyzer").format(record("logpipe.analyzer.runner", logging.ERROR, "run failed",
                                                        exc_info=sys.exc_info(), color_message="\x1b[1mrun\x1b[0m"))
    first, *rest = line.split("\n")
    assert first == f"{clock()} ERROR analyzer   run failed"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "KeyError: 'missing'"


def test_colour_marks_level_and_service_and_nothing_else():
    formatter = HumanFormatter("logpipe", colour=True)
    line = formatter.format(record("logpipe.gateway.app", logging.ERROR, "down", port=8080))
    assert "\x1b[31mERROR" in line
    assert ANSI.sub("", line) == f"{clock()} ERROR gateway    down  port=8080"


def test_json_line_keeps_every_field():
    payload = json.loads(JsonFormatter("ingest").format(record("logpipe.ingest.app", logging.WARNING, "slow",
                                                               seconds=2.5, color_message="x")))
    assert payload["level"] == "WARN" and payload["service"] == "ingest" and payload["message"] == "slow"
    assert payload["seconds"] == 2.5 and payload["logger"] == "logpipe.ingest.app"
    assert payload["timestamp"].endswith("Z") and "color_message" not in payload


def test_auto_writes_human_lines_to_a_terminal(terminal, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    configure_logging("logpipe", "INFO", "auto", stream=terminal.stream)
    logging.getLogger("logpipe.generator.service").info("producing", extra={"rate": 300})
    logging.getLogger("logpipe.generator.service").debug("not shown below INFO")
    screen = terminal.read()
    assert "\x1b[" in screen  # colour on a terminal
    lines = ANSI.sub("", screen).splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO  generator  producing  rate=300", lines[0])


def test_auto_writes_json_lines_when_not_a_terminal():
    stream = io.StringIO()
    configure_logging("ingest", "INFO", "auto", stream=stream)
    logging.getLogger("logpipe.ingest.app").info("ingest consuming", extra={"topic": "raw-logs"})
    [line] = stream.getvalue().splitlines()
    payload = json.loads(line)
    assert payload["message"] == "ingest consuming" and payload["topic"] == "raw-logs"


def test_log_format_json_wins_over_a_terminal_and_auto_is_the_default(terminal, monkeypatch):
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert CommonSettings().log_format == "auto"
    monkeypatch.setenv("LOG_FORMAT", "json")
    configure_logging("gateway", "INFO", CommonSettings().log_format, stream=terminal.stream)
    logging.getLogger("logpipe.gateway.app").warning("token store unreachable")
    [line] = terminal.read().splitlines()
    assert json.loads(line)["level"] == "WARN"


def test_text_on_a_pipe_has_no_colour_and_no_color_turns_it_off_on_a_terminal(terminal, monkeypatch):
    stream = io.StringIO()
    configure_logging("logpipe", "INFO", "text", stream=stream)
    logging.getLogger("logpipe.ingest").info("ready", extra={"url": "http://127.0.0.1:8001/"})
    assert stream.getvalue().endswith(" INFO  ingest     ready  url=http://127.0.0.1:8001/\n")
    assert "\x1b" not in stream.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    configure_logging("logpipe", "INFO", "auto", stream=terminal.stream)
    logging.getLogger("logpipe.ingest").info("ready")
    screen = terminal.read()
    assert "ready" in screen and "\x1b" not in screen


def test_an_unknown_log_format_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of auto, json, text, not 'xml'"):
        configure_logging("logpipe", "INFO", "xml", stream=io.StringIO())
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        CommonSettings()


def test_periodic_count_logs_the_first_event_then_a_count_per_interval():
    stream = io.StringIO()
    configure_logging("vectorizer", "INFO", "json", stream=stream)
    now = [100.0]
    counter = PeriodicCount(logging.getLogger("logpipe.vectorizer.handlers"), "novel errors", interval=60,
                            clock=lambda: now[0])
    counter.add(1)
    for _ in range(40):  # a burst within the minute: no line each
        now[0] += 1
        counter.add(2)
    counter.add(0)
    now[0] = 161.0
    counter.add(3)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["message"], line["count"], line["total"], line.get("seconds")) for line in lines] == [
        ("novel errors", 1, 1, None), ("novel errors", 83, 84, 61)]
