"""Turn what real shippers write into log records.

Accepted as they are written, one Kafka message (or one HTTP JSON line) at a time:
- our own records and any flat JSON log (python-json-logger, pino, zap, logrus, Serilog);
- Fluent Bit (`log`, `@timestamp`/`date` as epoch seconds, `kubernetes.*`);
- Vector (`message`, `timestamp`, `host`, `kubernetes.pod_*`);
- Logstash / Elastic Common Schema (`@timestamp`, `log.level`, `service.name`, `host.name`,
  `trace.id`, `error.*`, `http.*`, `url.path`);
- the OpenTelemetry Collector's Kafka exporter with `encoding: otlp_json`
  (`resourceLogs[].scopeLogs[].logRecords[]`: one message, many records);
- a plain text line: the message is the line, the level is read from it, the time is the
  Kafka timestamp.

Nested objects are flattened to dotted keys, the aliases below pick the 23 record fields,
and every other key is kept in `attributes`. Input that cannot be a log raises
`NotALogError` with the reason, and the caller sends it to the DLQ.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson

from logpipe.core.record import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    Level,
    attribute_value,
    derived_record_id,
    infer_level,
    normalize_level,
    otel_severity_level,
)


class NotALogError(ValueError):
    """The input cannot be a log record; the message says why."""


# First alias present wins; keys are compared after flattening nested objects to dots.
ALIASES: dict[str, tuple[str, ...]] = {
    "message": ("message", "msg", "log", "MESSAGE", "body", "short_message", "@message",
                "@m", "@mt", "text", "event.original"),
    "timestamp": ("timestamp", "@timestamp", "time", "ts", "@t", "date", "datetime",
                  "timeUnixNano", "time_unix_nano", "observedTimeUnixNano", "eventTime",
                  "__REALTIME_TIMESTAMP"),
    "level": ("level", "severity", "lvl", "levelname", "loglevel", "log_level", "log.level",
              "severityText", "severity_text", "@l", "PRIORITY", "severityNumber",
              "severity_number", "level_name", "status"),
    "service": ("service", "service.name", "service_name", "app", "application",
                "app_name", "appname", "resource.service.name", "kubernetes.labels.app",
                "kubernetes.labels.app.kubernetes.io/name", "kubernetes.container_name",
                "kubernetes.container.name", "SYSLOG_IDENTIFIER", "ident", "programname",
                "tag"),
    "logger": ("logger", "logger_name", "log.logger", "loggerName", "name", "scope.name",
               "SourceContext"),
    "host": ("host", "hostname", "host.name", "host.hostname", "kubernetes.host",
             "kubernetes.node_name", "_HOSTNAME", "resource.host.name"),
    "pod": ("pod", "pod_name", "kubernetes.pod_name", "kubernetes.pod.name", "k8s.pod.name",
            "resource.k8s.pod.name"),
    "namespace": ("namespace", "kubernetes.namespace_name", "kubernetes.pod_namespace",
                  "kubernetes.namespace", "k8s.namespace.name", "resource.k8s.namespace.name"),
    "environment": ("environment", "env", "deployment.environment", "service.environment",
                    "deployment.environment.name", "resource.deployment.environment"),
    "version": ("version", "service.version", "app_version", "resource.service.version"),
    "trace_id": ("trace_id", "traceId", "traceid", "trace.id", "dd.trace_id", "otelTraceID",
                 "TraceId"),
    "span_id": ("span_id", "spanId", "spanid", "span.id", "dd.span_id", "otelSpanID",
                "SpanId"),
    "user_id": ("user_id", "userId", "user.id", "enduser.id", "uid"),
    "session_id": ("session_id", "sessionId", "session.id"),
    "request_id": ("request_id", "requestId", "http.request.id", "x_request_id", "req_id",
                   "request.id"),
    "http_method": ("http_method", "http.method", "http.request.method", "method"),
    "http_path": ("http_path", "http.path", "url.path", "http.target", "http.route", "path",
                  "url"),
    "http_status": ("http_status", "http.status_code", "http.response.status_code",
                    "status_code", "statusCode"),
    "duration_ms": ("duration_ms", "latency_ms", "elapsed_ms", "response_time_ms",
                    "event.duration"),
    "client_ip": ("client_ip", "client.ip", "source.ip", "remote_addr", "http.client_ip",
                  "client.address", "clientIp"),
    "user_agent": ("user_agent", "user_agent.original", "http.user_agent", "userAgent",
                   "user_agent.name"),
    "error_type": ("error_type", "error.type", "exception.type", "exc_type", "error.kind",
                   "exception_type"),
    "stack_trace": ("stack_trace", "error.stack_trace", "exception.stacktrace", "stacktrace",
                    "stack", "exc_info", "error.stack", "@x", "exception"),
}
# `event.duration` is nanoseconds in ECS.
_NANOSECOND_DURATIONS = frozenset({"event.duration"})
# `status` is a level only when it reads as one (Datadog style); otherwise it stays an attribute.
_SOFT_LEVEL_KEYS = frozenset({"status"})
STRING_TARGETS = tuple(k for k in ALIASES if k not in ("timestamp", "level", "http_status",
                                                      "duration_ms"))


def flatten(obj: dict[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested objects to dotted keys; lists stay values."""
    if out is None:
        out = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flatten(value, f"{name}.", out)
        else:
            out[name] = value
    return out


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 strings and epoch numbers (s, ms, us or ns by magnitude) to UTC.

    Returns None for a string that is not a time (the caller keeps it as an attribute);
    raises NotALogError for values that cannot be a time at all.
    """
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise NotALogError(f"timestamp has impossible type {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.replace(".", "", 1).isdigit():
            return parse_timestamp(float(text))
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    elif isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise NotALogError("timestamp is not a finite number")
        number = float(value)
        magnitude = abs(number)
        if magnitude >= 1e17:
            seconds = number / 1e9
        elif magnitude >= 1e14:
            seconds = number / 1e6
        elif magnitude >= 1e11:
            seconds = number / 1e3
        else:
            seconds = number
        try:
            parsed = datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError) as exc:
            raise NotALogError(f"timestamp {value!r} is out of range") from exc
    else:
        raise NotALogError(f"timestamp has impossible type {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    parsed = parsed.astimezone(timezone.utc)
    if not MIN_TIMESTAMP <= parsed < MAX_TIMESTAMP:
        raise NotALogError(f"timestamp {value!r} is outside 1970..2200")
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def _scalar_text(field: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if field == "stack_trace" and isinstance(value, list):
        return "\n".join(str(line) for line in value)
    raise NotALogError(f"field {field!r} has impossible type {type(value).__name__}")


def _int_field(field: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NotALogError(f"field {field!r} has impossible type {type(value).__name__}")
    try:
        number = int(float(value))
    except (TypeError, ValueError) as exc:
        raise NotALogError(f"field {field!r} is not a number: {value!r}") from exc
    if field == "http_status" and not 100 <= number <= 599:
        raise NotALogError(f"http_status {number} is not an HTTP status")
    return number


def _float_field(field: str, value: Any, scale: float = 1.0) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NotALogError(f"field {field!r} has impossible type {type(value).__name__}")
    try:
        number = float(value) * scale
    except (TypeError, ValueError) as exc:
        raise NotALogError(f"field {field!r} is not a number: {value!r}") from exc
    if not math.isfinite(number) or number < 0:
        raise NotALogError(f"field {field!r} must be a finite, non-negative number")
    return number


def _pop_first(flat: dict[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    for key in keys:
        if key in flat:
            value = flat[key]
            if value is None or value == "":
                continue
            return key, flat.pop(key)
    return None, None


def normalize_object(obj: dict[str, Any], fallback_time: datetime, record_id: str) -> dict[str, Any]:
    """One JSON object from any shipper to a record dict (the 23 fields, record_id, attributes)."""
    for key in ALIASES["message"]:
        if isinstance(obj.get(key), (dict, list)) and key not in ("log",):
            raise NotALogError(f"message has impossible type {type(obj[key]).__name__}")
    flat = flatten(obj)
    record: dict[str, Any] = {}

    _, message = _pop_first(flat, ALIASES["message"])
    if message is None:
        raise NotALogError("no message field (looked for " + ", ".join(ALIASES["message"][:6]) + ", ...)")
    if isinstance(message, (dict, list, bool)):
        raise NotALogError(f"message has impossible type {type(message).__name__}")
    record["message"] = message if isinstance(message, str) else str(message)

    timestamp = None
    time_key, time_value = _pop_first(flat, ALIASES["timestamp"])
    if time_key is not None:
        timestamp = parse_timestamp(time_value)
        if timestamp is None:
            flat[f"{time_key}_original"] = time_value
    record["timestamp"] = timestamp or fallback_time

    level = None
    for key in ALIASES["level"]:
        if key not in flat or flat[key] in (None, ""):
            continue
        value = flat[key]
        if isinstance(value, (dict, list)):
            raise NotALogError(f"level has impossible type {type(value).__name__}")
        if key in ("severityNumber", "severity_number") and isinstance(value, (int, float)):
            level = otel_severity_level(int(value))
        else:
            level = normalize_level(value)
        if level is None and key in _SOFT_LEVEL_KEYS:
            continue
        flat.pop(key)
        if level is None:
            flat["level_original"] = value
            level = infer_level(record["message"])
        break
    record["level"] = level or infer_level(record["message"])

    for field in STRING_TARGETS:
        if field == "message":
            continue
        key, value = _pop_first(flat, ALIASES[field])
        record[field] = _scalar_text(field, value) if key is not None else ""
    if not record["service"]:
        record["service"] = "unknown"

    _, status = _pop_first(flat, ALIASES["http_status"])
    record["http_status"] = _int_field("http_status", status)
    key, duration = _pop_first(flat, ALIASES["duration_ms"])
    record["duration_ms"] = _float_field("duration_ms", duration,
                                         1e-6 if key in _NANOSECOND_DURATIONS else 1.0)

    given_id = flat.pop("record_id", None)
    if given_id is not None and not isinstance(given_id, (str, int)):
        raise NotALogError("record_id must be a string")
    record["record_id"] = str(given_id) if given_id not in (None, "") else record_id
    if len(record["record_id"]) > 128:
        raise NotALogError("record_id is longer than 128 characters")

    attributes = flat.pop("attributes", None)
    merged: dict[str, str] = {}
    if isinstance(attributes, dict):
        merged.update({k: attribute_value(v) for k, v in attributes.items()})
    for key, value in flat.items():
        if value is None:
            continue
        merged[key] = attribute_value(value)
    record["attributes"] = merged
    return record


def _otlp_value(value: dict[str, Any]) -> Any:
    """An OTLP AnyValue in its JSON encoding to a plain value."""
    if not isinstance(value, dict):
        return value
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_otlp_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: _otlp_value(kv.get("value", {})) for kv in value["kvlistValue"].get("values", [])}
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _otlp_attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: _otlp_value(item.get("value", {})) for item in items or [] if "key" in item}


def otlp_json_records(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """OTLP/JSON `ExportLogsServiceRequest` to flat objects that `normalize_object` reads."""
    out: list[dict[str, Any]] = []
    for resource_logs in payload.get("resourceLogs") or payload.get("resource_logs") or []:
        resource = _otlp_attributes((resource_logs.get("resource") or {}).get("attributes"))
        for scope_logs in resource_logs.get("scopeLogs") or resource_logs.get("scope_logs") or []:
            scope = scope_logs.get("scope") or {}
            for log in scope_logs.get("logRecords") or scope_logs.get("log_records") or []:
                item: dict[str, Any] = {}
                # OTLP semantic conventions: resource first, then the record's own attributes win.
                item.update(resource)
                item.update(_otlp_attributes(log.get("attributes")))
                body = _otlp_value(log.get("body") or {})
                item["message"] = body if isinstance(body, str) else orjson.dumps(body).decode() if body is not None else ""
                time_value = log.get("timeUnixNano") or log.get("observedTimeUnixNano")
                if time_value not in (None, "0", 0):
                    item["timeUnixNano"] = int(time_value)
                if log.get("severityText"):
                    item["severityText"] = log["severityText"]
                elif log.get("severityNumber"):
                    item["severityNumber"] = int(log["severityNumber"]) if str(log["severityNumber"]).isdigit() else log["severityNumber"]
                if log.get("traceId"):
                    item["traceId"] = log["traceId"]
                if log.get("spanId"):
                    item["spanId"] = log["spanId"]
                if scope.get("name"):
                    item.setdefault("scope.name", scope["name"])
                out.append(item)
    return out


def decode_message(value: bytes | None, *, kafka_timestamp_ms: int | None, topic: str,
                   partition: int, offset: int, max_bytes: int) -> list[dict[str, Any]]:
    """One Kafka message value to its record dicts, or NotALogError with the reason."""
    if value is None or not value.strip():
        raise NotALogError("empty message")
    if len(value) > max_bytes:
        raise NotALogError(f"message is {len(value)} bytes, over the {max_bytes}-byte limit")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotALogError(f"invalid UTF-8 at byte {exc.start}") from exc
    if kafka_timestamp_ms is not None and kafka_timestamp_ms > 0:
        fallback_time = datetime.fromtimestamp(kafka_timestamp_ms / 1000, tz=timezone.utc)
    else:
        fallback_time = datetime.now(timezone.utc)
    fallback_time = fallback_time.replace(microsecond=fallback_time.microsecond // 1000 * 1000)
    stripped = text.strip()
    if "\x00" in stripped:
        raise NotALogError("message contains NUL bytes")

    if stripped[0] in "{[\"":
        try:
            parsed = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise NotALogError(f"malformed JSON: {exc}") from exc
        if isinstance(parsed, str):
            stripped = parsed
        elif isinstance(parsed, list):
            raise NotALogError("a JSON array is not a log record; send one object per message")
        else:
            objects = otlp_json_records(parsed) if ("resourceLogs" in parsed or "resource_logs" in parsed) else [parsed]
            if not objects:
                raise NotALogError("OTLP payload holds no log records")
            return [
                normalize_object(obj, fallback_time, derived_record_id(topic, partition, offset, index))
                for index, obj in enumerate(objects)
            ]
    return [text_record(stripped, fallback_time, derived_record_id(topic, partition, offset))]


def text_record(line: str, timestamp: datetime, record_id: str) -> dict[str, Any]:
    """A plain text line is a log: the line is the message, the level is read from it."""
    record: dict[str, Any] = {field: "" for field in STRING_TARGETS}
    record.update(
        message=line,
        timestamp=timestamp,
        level=infer_level(line),
        service="unknown",
        http_status=None,
        duration_ms=None,
        record_id=record_id,
        attributes={"format": "text"},
    )
    return record


__all__ = ["NotALogError", "decode_message", "normalize_object", "parse_timestamp",
           "otlp_json_records", "text_record", "flatten", "Level"]
