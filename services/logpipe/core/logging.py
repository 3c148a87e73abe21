"""Our own logs on stderr: one JSON object per line for machines, one short line for a person.

`LOG_FORMAT=auto` (the default) picks by where stderr goes: a terminal gets the human form
(`HH:MM:SS LEVEL service  message  key=value`, coloured), anything else (a pipe, a file,
Kubernetes) gets JSON lines. `json` and `text` force one form.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from typing import IO, Callable

import orjson

from logpipe import __version__
from logpipe.core import tracing

FORMATS = ("auto", "json", "text")
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# uvicorn repeats its message with ANSI codes in this extra; the message itself is enough.
_HIDDEN_EXTRAS = {"color_message"}
_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_NOISY_LIBRARIES = ("aiokafka", "kafka", "uvicorn.access", "httpx", "httpcore")


def _level(record: logging.LogRecord) -> str:
    return _LEVEL_NAMES.get(record.levelname, record.levelname)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in record.__dict__.items()
            if key not in _RESERVED and key not in _HIDDEN_EXTRAS and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
        payload = {
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "service": self.service,
            "level": _level(record),
            "message": record.getMessage(),
            "logger": record.name,
            "version": __version__,
        }
        ids = tracing.current_ids()
        if ids is not None:
            payload["trace_id"], payload["span_id"] = ids
        if record.exc_info:
            payload["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else ""
            payload["stack_trace"] = self.formatException(record.exc_info)
        payload.update(_extras(record))
        return orjson.dumps(payload, default=str).decode()


_COLOURS = {"DEBUG": "\x1b[2m", "INFO": "\x1b[32m", "WARN": "\x1b[33m", "ERROR": "\x1b[31m",
            "FATAL": "\x1b[1;31m"}
_DIM, _CYAN, _RESET = "\x1b[2m", "\x1b[36m", "\x1b[0m"


class HumanFormatter(logging.Formatter):
    """`HH:MM:SS LEVEL service  message  key=value ...` in local time, for a person at a terminal.

    The service column names who logged: the part of `logpipe.<service>.…` a logger belongs to
    (`run all` serves every service from one process), else the library (`uvicorn`).
    """

    def __init__(self, service: str, colour: bool = False) -> None:
        super().__init__()
        self.service = service
        self.colour = colour

    def _who(self, record: logging.LogRecord) -> str:
        parts = record.name.split(".")
        if parts[0] != "logpipe":
            return parts[0] or self.service
        if len(parts) == 1 or parts[1] in ("runner", "dev", "cli"):
            return self.service  # the process itself
        if parts[1] == "core":
            # logpipe.core.broker -> broker: core serves everyone, its module says more.
            return parts[2] if len(parts) > 2 else self.service
        return parts[1]

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = _level(record)
        who = self._who(record)
        fields = " ".join(f"{key}={_value(value)}" for key, value in _extras(record).items())
        if self.colour:
            line = (f"{_DIM}{clock}{_RESET} {_COLOURS.get(level, '')}{level:<5}{_RESET} "
                    f"{_CYAN}{who:<10}{_RESET} {record.getMessage()}")
            if fields:
                line += f"  {_DIM}{fields}{_RESET}"
        else:
            line = f"{clock} {level:<5} {who:<10} {record.getMessage()}"
            if fields:
                line += f"  {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    # A value with spaces is quoted so `key=value` pairs stay apart when read.
    return orjson.dumps(text).decode() if (not text or any(c.isspace() for c in text)) else text


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False


def human_output(fmt: str, stream: IO[str]) -> bool:
    """Whether `fmt` (a LOG_FORMAT value) means the human form on `stream`."""
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt == "text" or (fmt == "auto" and is_terminal(stream))


# An API token in a URL (`?token=`: what browsers' WebSockets send, and what uvicorn logs with
# the path) or anywhere in a message; the public id of an `lpt_` token stays readable.
_SECRETS = re.compile(r"((?:[?&]|\b)token=)[^&\s\"']+|(lpt_[0-9a-f]{12}_)[A-Za-z0-9_-]{43}")


def redact(text: str) -> str:
    return _SECRETS.sub(lambda match: (match.group(1) or match.group(2)) + "[redacted]", text)


class RedactSecrets(logging.Filter):
    """Takes tokens out of a record's message before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
            record.__dict__.pop("color_message", None)
        return True


def protect_server_logs() -> None:
    """uvicorn logs each WebSocket's path with its query string (and, when on, each request's in
    the access log): redact them at the source, whatever handlers are configured."""
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactSecrets) for existing in logger.filters):
            logger.addFilter(RedactSecrets())


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto", stream: IO[str] | None = None) -> None:
    stream = stream if stream is not None else sys.stderr
    human = human_output(fmt, stream)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    if human:
        # https://no-color.org: a set NO_COLOR turns colour off even on a terminal.
        handler.setFormatter(HumanFormatter(service, colour=is_terminal(stream) and not os.environ.get("NO_COLOR")))
    else:
        handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # A library logger with a lower level of its own still must not reach the output below ours.
    handler.setLevel(root.level)
    quiet = max(logging.WARNING, root.level)
    for noisy in _NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(quiet)


class PeriodicCount:
    """Counts events and logs their total at most once every `interval` seconds, instead of
    one line per event. The first event is logged at once (something started happening); after
    that, the `add` that finds the interval over writes the count since the last line, so a
    quiet stream writes nothing. Thread-safe."""

    def __init__(self, logger: logging.Logger, message: str, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.message, self.interval, self.clock = logger, message, interval, clock
        self._lock = threading.Lock()
        self._pending = 0
        self._total = 0
        self._since: float | None = None

    def add(self, count: int = 1) -> None:
        if count <= 0:
            return
        with self._lock:
            self._pending += count
            self._total += count
            now = self.clock()
            if self._since is not None and now - self._since < self.interval:
                return
            fields = {"count": self._pending, "total": self._total}
            if self._since is not None:
                fields["seconds"] = round(now - self._since)
            self._pending, self._since = 0, now
        self.logger.info(self.message, extra=fields)


_counters: dict[tuple[str, str], PeriodicCount] = {}
_counters_lock = threading.Lock()


def count_periodically(logger: logging.Logger, message: str, count: int, interval: float = 60.0) -> None:
    """`PeriodicCount.add` on one counter per (logger, message), created on first use."""
    with _counters_lock:
        counter = _counters.get((logger.name, message))
        if counter is None:
            counter = _counters[(logger.name, message)] = PeriodicCount(logger, message, interval)
    counter.add(count)
