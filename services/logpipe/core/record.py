"""The log record: the one schema every service reads and writes.

A record has the 23 fields of a realistic application log, plus `record_id` (the
idempotency key) and `attributes` (every field a shipper sent that is not one of the
23: kept, never dropped).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Level(StrEnum):
    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    FATAL = "FATAL"


# The levels the vectorizer cares about: ingest forwards these to `vectorization-queue`.
FORWARDED_LEVELS = frozenset({Level.WARN, Level.ERROR, Level.FATAL})

LEVEL_ALIASES: dict[str, Level] = {
    "trace": Level.TRACE, "trc": Level.TRACE, "finest": Level.TRACE, "finer": Level.TRACE,
    "debug": Level.DEBUG, "dbg": Level.DEBUG, "dbug": Level.DEBUG, "fine": Level.DEBUG,
    "verbose": Level.DEBUG, "config": Level.DEBUG,
    "info": Level.INFO, "inf": Level.INFO, "information": Level.INFO,
    "informational": Level.INFO, "notice": Level.INFO, "i": Level.INFO,
    "warn": Level.WARN, "warning": Level.WARN, "wrn": Level.WARN, "w": Level.WARN,
    "error": Level.ERROR, "err": Level.ERROR, "eror": Level.ERROR, "severe": Level.ERROR,
    "e": Level.ERROR,
    "fatal": Level.FATAL, "critical": Level.FATAL, "crit": Level.FATAL, "crt": Level.FATAL,
    "emerg": Level.FATAL, "emergency": Level.FATAL, "alert": Level.FATAL, "panic": Level.FATAL,
    "f": Level.FATAL, "d": Level.DEBUG, "t": Level.TRACE,
}

# syslog severities 0..7 (RFC 5424)
_SYSLOG_SEVERITY = [Level.FATAL, Level.FATAL, Level.FATAL, Level.ERROR, Level.WARN,
                    Level.INFO, Level.INFO, Level.DEBUG]


def otel_severity_level(number: int) -> Level:
    """OpenTelemetry SeverityNumber (1..24) to a level."""
    if number <= 4:
        return Level.TRACE
    if number <= 8:
        return Level.DEBUG
    if number <= 12:
        return Level.INFO
    if number <= 16:
        return Level.WARN
    if number <= 20:
        return Level.ERROR
    return Level.FATAL


def normalize_level(value: Any) -> Level | None:
    """A level name in any common spelling, or a numeric level, to a `Level`.

    Returns None when the value is not recognisably a level (the caller decides).
    Numbers: pino/bunyan (10..60) when a multiple of ten, else syslog 0..7.
    """
    if isinstance(value, Level):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = int(value)
        if number >= 10 and number % 10 == 0:
            return {10: Level.TRACE, 20: Level.DEBUG, 30: Level.INFO, 40: Level.WARN,
                    50: Level.ERROR}.get(number, Level.FATAL)
        if 0 <= number <= 7:
            return _SYSLOG_SEVERITY[number]
        return None
    if isinstance(value, str):
        key = value.strip().lower()
        if key.isdigit():
            return normalize_level(int(key))
        return LEVEL_ALIASES.get(key)
    return None


_LEVEL_IN_TEXT = re.compile(
    r"\b(FATAL|CRITICAL|CRIT|PANIC|EMERG|SEVERE|ERROR|ERR|EXCEPTION|WARNING|WARN|INFO|DEBUG|TRACE)\b",
    re.IGNORECASE,
)
_TEXT_LEVEL = {"critical": Level.FATAL, "crit": Level.FATAL, "panic": Level.FATAL,
               "emerg": Level.FATAL, "severe": Level.ERROR, "exception": Level.ERROR}


def infer_level(text: str) -> Level:
    """The level a plain text line states (its first level word), else INFO."""
    match = _LEVEL_IN_TEXT.search(text, 0, 256)
    if not match:
        return Level.INFO
    word = match.group(1).lower()
    return _TEXT_LEVEL.get(word) or LEVEL_ALIASES[word]


# The 23 fields, in storage order. `timestamp`, `service`, `level`, `message` first.
STRING_FIELDS = (
    "service", "level", "message", "logger", "host", "pod", "namespace", "environment",
    "version", "trace_id", "span_id", "user_id", "session_id", "request_id", "http_method",
    "http_path", "client_ip", "user_agent", "error_type", "stack_trace",
)
RECORD_FIELDS = ("timestamp", *STRING_FIELDS[:3], *STRING_FIELDS[3:], "http_status", "duration_ms")
assert len(RECORD_FIELDS) == 23

MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIMESTAMP = datetime(2200, 1, 1, tzinfo=timezone.utc)

# Ids derived from Kafka coordinates live in their own UUID namespace, so a replay of the
# same (topic, partition, offset) yields the same record_id.
RECORD_ID_NAMESPACE = uuid.UUID("6f1b3c1e-6a55-4c43-9c0e-1d8f3b0a9e21")


def derived_record_id(topic: str, partition: int, offset: int, index: int = 0) -> str:
    return str(uuid.uuid5(RECORD_ID_NAMESPACE, f"{topic}/{partition}/{offset}/{index}"))


def new_record_id() -> str:
    return str(uuid.uuid4())


def to_utc_ms(value: datetime) -> datetime:
    """A datetime as UTC with millisecond precision (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class LogRecord(BaseModel):
    """One log. Unknown fields passed to the constructor are moved into `attributes`."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    timestamp: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    service: str = "unknown"
    level: Level = Level.INFO
    message: str
    logger: str = ""
    host: str = ""
    pod: str = ""
    namespace: str = ""
    environment: str = ""
    version: str = ""
    trace_id: str = ""
    span_id: str = ""
    user_id: str = ""
    session_id: str = ""
    request_id: str = ""
    http_method: str = ""
    http_path: str = ""
    http_status: int | None = Field(default=None, ge=100, le=599)
    duration_ms: float | None = Field(default=None, ge=0)
    client_ip: str = ""
    user_agent: str = ""
    error_type: str = ""
    stack_trace: str = ""
    record_id: str = Field(default_factory=new_record_id, min_length=1, max_length=128)
    attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Level:
        level = normalize_level(value)
        if level is None:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: datetime) -> datetime:
        value = to_utc_ms(value)
        if not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
            raise ValueError(f"timestamp {value.isoformat()} is outside 1970..2200")
        return value

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes(cls, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValueError("attributes must be an object")
        return {str(k): attribute_value(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _keep_unknown_fields(self) -> "LogRecord":
        extra = self.__pydantic_extra__ or {}
        if extra:
            for key, value in extra.items():
                self.attributes.setdefault(key, attribute_value(value))
            extra.clear()
        return self

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["timestamp"] = format_timestamp(self.timestamp)
        return data


def attribute_value(value: Any) -> str:
    """Attributes are strings in storage; structured values keep their JSON form."""
    if isinstance(value, str):
        return value
    import orjson

    return orjson.dumps(value).decode()


def format_timestamp(value: datetime) -> str:
    """ISO 8601, UTC, millisecond precision, `Z` suffix: the wire form of a timestamp."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    # isoformat truncates to milliseconds, as to_utc_ms does; about twice as fast as strftime.
    return value.isoformat(timespec="milliseconds") + "Z"
