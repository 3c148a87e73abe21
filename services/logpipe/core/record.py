"""The log record: the one schema every service reads and writes.

A record has the 23 fields of a realistic application log, plus `record_id` (the
idempotency key) and `attributes` (every field a shipper sent that is not one of the
23: kept, never dropped). The field table below (`FIELDS`, name, kind, shipper keys,
default, bounds) is the only place they are defined: the normaliser (core/shippers.py),
ingest's Arrow schema and fast path, `LogRecord` and the gateway's API models derive from it.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator


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
        if isinstance(value, float) and not math.isfinite(value):
            return None
        number = int(value)
        if number >= 10 and number % 10 == 0:
            return {10: Level.TRACE, 20: Level.DEBUG, 30: Level.INFO, 40: Level.WARN,
                    50: Level.ERROR}.get(number, Level.FATAL)
        if 0 <= number <= 7:
            return _SYSLOG_SEVERITY[number]
        return None
    if isinstance(value, str):
        key = value.strip().lower()
        # ASCII digits only: str.isdigit() accepts '³' or '٣', which int() refuses.
        if key.isascii() and key.isdigit():
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


class Kind(StrEnum):
    """How a field is stored and coerced (one rule per kind, used by every normaliser)."""

    TIME = "time"  # DateTime64(3, 'UTC'); in: ISO 8601 or epoch s/ms/us/ns; out: ISO 8601 UTC ms
    TEXT = "text"  # String; numbers and booleans become their text
    LEVEL = "level"  # String holding a `Level`; any common spelling or number in
    INT = "int"  # UInt<bits>; null when absent
    FLOAT = "float"  # Float64; null when absent
    MAP = "map"  # Map(String, String); structured values keep their JSON form


@dataclass(frozen=True)
class FieldSpec:
    """One field of the log record: everything the normalisers, storage and the API derive."""

    name: str
    kind: Kind
    description: str
    # Keys shippers use for this field, compared after flattening nested objects to dots;
    # the first present (and non-empty) wins.
    aliases: tuple[str, ...] = ()
    required: bool = False
    # What an absent value becomes; None on a nullable field means stored as NULL.
    default: Any = ""
    nullable: bool = False
    bits: int = 0  # INT: the width of the unsigned storage type
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None

    @property
    def storage_type(self) -> str:
        """The ClickHouse type class (without Nullable/LowCardinality wrappers)."""
        return {Kind.TIME: "DateTime64", Kind.TEXT: "String", Kind.LEVEL: "String",
                Kind.INT: f"UInt{self.bits}", Kind.FLOAT: "Float64", Kind.MAP: "Map"}[self.kind]

    def arrow_field(self):
        """This field as a pyarrow field (imported lazily: most importers of core never need Arrow)."""
        import pyarrow as pa

        arrow_type = {
            Kind.TIME: pa.timestamp("ms", tz="UTC"), Kind.TEXT: pa.string(), Kind.LEVEL: pa.string(),
            Kind.FLOAT: pa.float64(), Kind.MAP: pa.map_(pa.string(), pa.string()),
        }.get(self.kind) or getattr(pa, f"uint{self.bits}")()
        return pa.field(self.name, arrow_type, nullable=self.nullable)


def _text(name: str, description: str, *aliases: str, default: str = "") -> FieldSpec:
    return FieldSpec(name, Kind.TEXT, description, (name, *aliases), default=default)


# The 23 fields, in storage order (sql/clickhouse/001_logs.sql): the one definition of a log.
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("timestamp", Kind.TIME, "when the log was written (UTC, milliseconds); absent or "
              "unreadable: the time Kafka received it",
              ("timestamp", "@timestamp", "time", "ts", "@t", "date", "datetime", "timeUnixNano",
               "time_unix_nano", "observedTimeUnixNano", "eventTime", "__REALTIME_TIMESTAMP"),
              default=None),
    _text("service", "who logged it", "service.name", "service_name", "app", "application", "app_name",
          "appname", "resource.service.name", "kubernetes.labels.app", "kubernetes.labels.app.kubernetes.io/name",
          "kubernetes.container_name", "kubernetes.container.name", "SYSLOG_IDENTIFIER", "ident",
          "programname", "tag", default="unknown"),
    FieldSpec("level", Kind.LEVEL, "TRACE, DEBUG, INFO, WARN, ERROR or FATAL; absent or unknown: read "
              "from the message text (INFO when it names none)",
              ("level", "severity", "lvl", "levelname", "loglevel", "log_level", "log.level", "severityText",
               "severity_text", "@l", "PRIORITY", "severityNumber", "severity_number", "level_name", "status"),
              default=None),
    FieldSpec("message", Kind.TEXT, "the log line", ("message", "msg", "log", "MESSAGE", "body",
              "short_message", "@message", "@m", "@mt", "text", "event.original"), required=True, default=None),
    _text("logger", "logger or scope name", "logger_name", "log.logger", "loggerName", "name", "scope.name",
          "SourceContext"),
    _text("host", "host or node", "hostname", "host.name", "host.hostname", "kubernetes.host",
          "kubernetes.node_name", "_HOSTNAME", "resource.host.name"),
    _text("pod", "Kubernetes pod", "pod_name", "kubernetes.pod_name", "kubernetes.pod.name", "k8s.pod.name",
          "resource.k8s.pod.name"),
    _text("namespace", "Kubernetes namespace", "kubernetes.namespace_name", "kubernetes.pod_namespace",
          "kubernetes.namespace", "k8s.namespace.name", "resource.k8s.namespace.name"),
    _text("environment", "deployment environment", "env", "deployment.environment", "service.environment",
          "deployment.environment.name", "resource.deployment.environment"),
    _text("version", "service version", "service.version", "app_version", "resource.service.version"),
    _text("trace_id", "trace id (W3C hex)", "traceId", "traceid", "trace.id", "dd.trace_id", "otelTraceID",
          "TraceId"),
    _text("span_id", "span id (W3C hex)", "spanId", "spanid", "span.id", "dd.span_id", "otelSpanID", "SpanId"),
    _text("user_id", "end user", "userId", "user.id", "enduser.id", "uid"),
    _text("session_id", "session", "sessionId", "session.id"),
    _text("request_id", "request", "requestId", "http.request.id", "x_request_id", "req_id", "request.id"),
    _text("http_method", "HTTP method", "http.method", "http.request.method", "method"),
    _text("http_path", "HTTP path or route", "http.path", "url.path", "http.target", "http.route", "path", "url"),
    FieldSpec("http_status", Kind.INT, "HTTP status code (100..599)",
              ("http_status", "http.status_code", "http.response.status_code", "status_code", "statusCode"),
              default=None, nullable=True, bits=16, minimum=100, maximum=599),
    FieldSpec("duration_ms", Kind.FLOAT, "duration in milliseconds (ECS `event.duration` nanoseconds are converted)",
              ("duration_ms", "latency_ms", "elapsed_ms", "response_time_ms", "event.duration"),
              default=None, nullable=True, minimum=0),
    _text("client_ip", "client address", "client.ip", "source.ip", "remote_addr", "http.client_ip",
          "client.address", "clientIp"),
    _text("user_agent", "HTTP user agent", "user_agent.original", "http.user_agent", "userAgent",
          "user_agent.name"),
    _text("error_type", "exception class", "error.type", "exception.type", "exc_type", "error.kind",
          "exception_type"),
    _text("stack_trace", "stack trace (a list of lines is joined)", "error.stack_trace", "exception.stacktrace",
          "stacktrace", "stack", "exc_info", "error.stack", "@x", "exception"),
)
assert len(FIELDS) == 23

# Beside the 23: the idempotency key, and every other field a shipper sent (kept, never dropped).
RECORD_ID = FieldSpec("record_id", Kind.TEXT, "idempotency key: given by the sender, else derived from the "
                      "Kafka coordinates (or, over HTTP, from the content)", ("record_id",), default=None,
                      max_length=128)
ATTRIBUTES = FieldSpec("attributes", Kind.MAP, "every field that is not one of the 23, as text (structured "
                       "values as JSON)", ("attributes",), default=None)
RECORD_SPECS: tuple[FieldSpec, ...] = (*FIELDS, RECORD_ID, ATTRIBUTES)
# What storage adds to each record: the pattern (ingest's tagger) and the pipeline that stored it.
PATTERN_ID = FieldSpec("pattern_id", Kind.INT, "the log's pattern (GET /api/patterns); 0 when none",
                       default=0, bits=64)
PIPELINE = FieldSpec("pipeline", Kind.TEXT, "the pipeline that stored the log", default="default")
STORED_SPECS: tuple[FieldSpec, ...] = (*RECORD_SPECS, PATTERN_ID, PIPELINE)
SPECS: dict[str, FieldSpec] = {spec.name: spec for spec in STORED_SPECS}

RECORD_FIELDS = tuple(spec.name for spec in FIELDS)
STRING_FIELDS = tuple(spec.name for spec in FIELDS if spec.kind in (Kind.TEXT, Kind.LEVEL))


def arrow_fields(specs=STORED_SPECS) -> list:
    """The pyarrow fields of `specs`, in order (ingest appends its Kafka bookkeeping columns)."""
    return [spec.arrow_field() for spec in specs]


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


class _RecordModel(BaseModel):
    """Validators of `LogRecord`; its fields are generated from `RECORD_SPECS` below."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _level_from_message(cls, data: Any) -> Any:
        # The normaliser's rule: a log that states no level is read for one.
        if isinstance(data, dict) and data.get("level") in (None, "") and isinstance(data.get("message"), str):
            data = {**data, "level": infer_level(data["message"])}
        return data

    @field_validator("level", mode="before", check_fields=False)
    @classmethod
    def _level(cls, value: Any) -> Level:
        level = normalize_level(value)
        if level is None:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("timestamp", check_fields=False)
    @classmethod
    def _timestamp(cls, value: datetime) -> datetime:
        value = to_utc_ms(value)
        if not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
            raise ValueError(f"timestamp {value.isoformat()} is outside 1970..2200")
        return value

    @field_validator("attributes", mode="before", check_fields=False)
    @classmethod
    def _attributes(cls, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValueError("attributes must be an object")
        return attribute_map(value)

    @model_validator(mode="after")
    def _keep_unknown_fields(self) -> "_RecordModel":
        extra = self.__pydantic_extra__ or {}
        if extra:
            for key, value in extra.items():
                if value is not None:
                    self.attributes.setdefault(key, attribute_value(value))
            extra.clear()
        return self

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["timestamp"] = format_timestamp(self.timestamp)
        return data


_PYTHON_TYPES = {Kind.TIME: datetime, Kind.TEXT: str, Kind.LEVEL: Level, Kind.INT: int, Kind.FLOAT: float,
                 Kind.MAP: dict[str, str]}


def model_field(spec: FieldSpec, python_type: Any = None, *,
                overrides: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """A `create_model` field definition from a spec (type, bounds, default, description);
    `overrides` replaces the default (a `default` or `default_factory` option)."""
    annotation = python_type or _PYTHON_TYPES[spec.kind]
    if spec.nullable:
        annotation = annotation | None
    options: dict[str, Any] = {"description": spec.description}
    if spec.minimum is not None:
        options["ge"] = spec.minimum
    if spec.maximum is not None:
        options["le"] = spec.maximum
    if spec.max_length is not None:
        options["min_length"], options["max_length"] = 1, spec.max_length
    if overrides is not None:
        options.update(overrides)
    elif spec.required:
        options["default"] = ...
    elif spec.kind is Kind.MAP:
        options["default_factory"] = dict
    else:
        options["default"] = spec.default
    return annotation, Field(**options)


# The typed record (what tests, the generator and the OpenAPI document use); the normaliser in
# core/shippers.py builds the same dicts from any shipper's shape.
LogRecord = create_model(
    "LogRecord",
    __base__=_RecordModel,
    __doc__="One log. Unknown fields passed to the constructor are moved into `attributes`.",
    **{spec.name: model_field(spec, overrides={
        "timestamp": {"default_factory": lambda: datetime.now(timezone.utc)},
        "level": {"default": Level.INFO},
        "record_id": {"default_factory": new_record_id},
    }.get(spec.name)) for spec in RECORD_SPECS},
)


def attribute_map(value: dict[str, Any]) -> dict[str, str]:
    """An `attributes` object as stored: text values, structured ones as JSON, nulls left out."""
    return {str(key): attribute_value(item) for key, item in value.items() if item is not None}


def wire_record(record: dict[str, Any]) -> dict[str, Any]:
    """A normalised record dict in its JSON form (what raw-logs and the live tail carry)."""
    out = dict(record)
    out["timestamp"] = format_timestamp(record["timestamp"])
    out["level"] = str(record["level"])
    return out

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
