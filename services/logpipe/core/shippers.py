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

Nested objects are flattened to dotted keys (our own `attributes` object is the attribute
map itself), the aliases of the field table in core/record.py pick the 23 record fields,
and every other key is kept in `attributes` (null values are left out). Input that cannot be a log raises
`NotALogError` with the reason, and the caller sends it to the DLQ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import orjson

from logpipe.core.record import (
    FIELDS,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    RECORD_ID,
    FieldSpec,
    Kind,
    Level,
    attribute_map,
    attribute_value,
    derived_record_id,
    infer_level,
    normalize_level,
    otel_severity_level,
)


class NotALogError(ValueError):
    """The input cannot be a log record; the message says why."""


@dataclass(frozen=True)
class RecordLimits:
    """What one log may look like before it is refused (the DLQ over Kafka, 400 over HTTP).

    The defaults follow Elasticsearch's mapping limits (`index.mapping.depth.limit` 20,
    `index.mapping.total_fields.limit` 1000): a log deeper or wider than that is a bug or an
    attack, and each key would be one more entry in the attributes map of every query.
    A time further ahead of the arrival time (and the clock) than `max_future_skew_s` is clamped
    to the arrival time (the original kept as `<key>_original`), as Splunk's MAX_DAYS_HENCE does:
    a wrong clock must not park a log where no recent query finds it.
    """

    max_depth: int = 20
    max_attributes: int = 1000
    max_future_skew_s: float = 600.0
    # The retention (LOG_TTL_DAYS): ClickHouse drops a row older than its TTL the moment it is
    # inserted, so such a log is refused with the reason (Loki's reject_old_samples) instead of
    # being accepted and silently gone. None: no check (tools that do not store).
    max_age_days: float | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> "RecordLimits":
        return cls(settings.max_nesting_depth, settings.max_attributes, settings.max_future_skew_s,
                   settings.log_ttl_days)


DEFAULT_LIMITS = RecordLimits()


def check_shape(obj: dict[str, Any], limits: RecordLimits) -> None:
    """Refuse a record nested deeper than `max_depth` (objects and lists both count), before
    anything recursive (flattening, JSON encoding of attribute values) touches it."""
    # Counted up front as well, so a record with 100,000 keys is not flattened first.
    given = obj.get("attributes")
    keys = len(obj) + (len(given) if isinstance(given, dict) else 0)
    if keys > limits.max_attributes + len(FIELDS) + 2:
        raise NotALogError(f"{keys} keys in one record, over the limit of {limits.max_attributes} "
                           "attributes (LOGPIPE_MAX_ATTRIBUTES)")
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, (dict, list)) and child:
                if depth + 1 > limits.max_depth:
                    raise NotALogError(f"the record is nested deeper than {limits.max_depth} levels "
                                       "(LOGPIPE_MAX_NESTING_DEPTH)")
                stack.append((child, depth + 1))


# The aliases live in the field table (core/record.py); first present wins.
ALIASES: dict[str, tuple[str, ...]] = {spec.name: spec.aliases for spec in FIELDS}
# `event.duration` is nanoseconds in ECS.
_NANOSECOND_DURATIONS = frozenset({"event.duration"})
# `status` is a level only when it reads as one (Datadog style); otherwise it stays an attribute.
_SOFT_LEVEL_KEYS = frozenset({"status"})
_OTEL_SEVERITY_KEYS = frozenset({"severityNumber", "severity_number"})
STRING_TARGETS = tuple(spec.name for spec in FIELDS if spec.kind is Kind.TEXT)
_FIELD_KEYS = frozenset(alias for spec in FIELDS for alias in spec.aliases)


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
    if parsed < MIN_TIMESTAMP:
        raise NotALogError(f"timestamp {value!r} is before 1970")
    # A time past MAX_TIMESTAMP (2200) is returned as it is: the caller clamps any time too far
    # ahead of the arrival time (RecordLimits.max_future_skew_s).
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


def _int_field(spec: FieldSpec, value: Any) -> int | None:
    field = spec.name
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NotALogError(f"field {field!r} has impossible type {type(value).__name__}")
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError) as exc:
        raise NotALogError(f"field {field!r} is not a number: {value!r}") from exc
    _check_bounds(spec, number)
    return number


def _float_field(spec: FieldSpec, value: Any, scale: float = 1.0) -> float | None:
    field = spec.name
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NotALogError(f"field {field!r} has impossible type {type(value).__name__}")
    try:
        number = float(value) * scale
    except (TypeError, ValueError) as exc:
        raise NotALogError(f"field {field!r} is not a number: {value!r}") from exc
    if not math.isfinite(number):
        raise NotALogError(f"field {field!r} must be a finite number")
    _check_bounds(spec, number)
    return number


def _check_bounds(spec: FieldSpec, number: float) -> None:
    low, high = spec.minimum, spec.maximum
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"outside {low:g}..{high:g}" if high is not None and low is not None else \
            f"below {low:g}" if low is not None else f"above {high:g}"
        raise NotALogError(f"{spec.name} {number:g} is {bounds} ({spec.description})")


def _pop_first(flat: dict[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    for key in keys:
        if key in flat:
            value = flat[key]
            if value is None or value == "":
                continue
            return key, flat.pop(key)
    return None, None


def _pop_level(flat: dict[str, Any], spec: FieldSpec, message: str) -> Level:
    for key in spec.aliases:
        if key not in flat or flat[key] in (None, ""):
            continue
        value = flat[key]
        if isinstance(value, (dict, list)):
            raise NotALogError(f"level has impossible type {type(value).__name__}")
        if key in _OTEL_SEVERITY_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
            level = otel_severity_level(int(value))
        else:
            level = normalize_level(value)
        if level is None and key in _SOFT_LEVEL_KEYS:
            continue
        flat.pop(key)
        if level is None:
            flat["level_original"] = value
        return level or infer_level(message)
    return infer_level(message)


def _pop_time(flat: dict[str, Any], spec: FieldSpec, fallback_time: datetime, limits: RecordLimits) -> datetime:
    key, value = _pop_first(flat, spec.aliases)
    if key is None:
        return fallback_time
    timestamp = parse_timestamp(value)
    if timestamp is not None:
        now = datetime.now(timezone.utc)
        # Ahead of both the arrival time and the clock: a Kafka timestamp may lag (a replay, a
        # mirrored topic) without making a log from today "the future".
        if timestamp >= MAX_TIMESTAMP or timestamp - max(fallback_time, now) > timedelta(seconds=limits.max_future_skew_s):
            timestamp = None
        elif limits.max_age_days is not None and now - timestamp > timedelta(days=limits.max_age_days):
            raise NotALogError(f"timestamp {value!r} is older than the retention ({limits.max_age_days:g} days, "
                               "LOG_TTL_DAYS): it would be deleted on arrival")
    if timestamp is None:
        flat[f"{key}_original"] = value
    return timestamp or fallback_time


# Fields read by a single pass over the object's keys (the common case: text and numbers);
# the time and the level have rules of their own (`_pop_time`, `_pop_level`).
_PICKED_KINDS = (Kind.TEXT, Kind.INT, Kind.FLOAT)
_ALIAS_OWNER: dict[str, tuple[str, int]] = {
    alias: (spec.name, rank) for spec in FIELDS if spec.kind in _PICKED_KINDS and not spec.required
    for rank, alias in enumerate(spec.aliases)}
# (name, step, spec) per field in storage order; steps are small ints, cheaper to compare per
# record than enum members.
_TEXT, _MESSAGE, _TIME, _LEVEL, _INT, _FLOAT = range(6)
_STEPS = {Kind.TEXT: _TEXT, Kind.TIME: _TIME, Kind.LEVEL: _LEVEL, Kind.INT: _INT, Kind.FLOAT: _FLOAT}
_PLAN = tuple((spec.name, _MESSAGE if spec.name == "message" else _STEPS[spec.kind], spec) for spec in FIELDS)


def _pick(flat: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """For each field, the first of its aliases present with a value (what `_pop_first` finds),
    in one pass over the keys instead of one lookup per alias."""
    best: dict[str, tuple[int, str]] = {}
    owners = _ALIAS_OWNER
    for key, value in flat.items():
        owner = owners.get(key)
        if owner is None or value is None or value == "":
            continue
        name, rank = owner
        current = best.get(name)
        if current is None or rank < current[0]:
            best[name] = (rank, key)
    return best


def _flatten_record(obj: dict[str, Any]) -> dict[str, Any]:
    """`flatten`, except that our own `attributes` object is the attribute map, not a prefix."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            if key == "attributes":
                continue
            if value:
                flatten(value, f"{key}.", flat)
                continue
        flat[key] = value
    return flat


def normalize_object(obj: dict[str, Any], fallback_time: datetime, record_id: str,
                     limits: RecordLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """One JSON object from any shipper to a record dict (the 23 fields, record_id, attributes).

    This is the one normaliser: ingest's exact path, the gateway's protocols and its live tail
    call it, and ingest's vectorised fast path applies the same field table (core/record.py).
    `fallback_time` is the arrival time: the time of a log without one, and the reference for
    clamping a time too far in the future.
    """
    check_shape(obj, limits)
    for key in ALIASES["message"]:
        if isinstance(obj.get(key), (dict, list)) and key not in ("log",):
            raise NotALogError(f"message has impossible type {type(obj[key]).__name__}")
    flat = _flatten_record(obj)

    _, message = _pop_first(flat, ALIASES["message"])
    if message is None:
        raise NotALogError("no message field (looked for " + ", ".join(ALIASES["message"][:6]) + ", ...)")
    if isinstance(message, (dict, list, bool)):
        raise NotALogError(f"message has impossible type {type(message).__name__}")
    message = message if isinstance(message, str) else str(message)

    picked = _pick(flat)
    record: dict[str, Any] = {}
    for name, step, spec in _PLAN:
        if step == _TEXT:
            chosen = picked.get(name)
            record[name] = (_scalar_text(name, flat.pop(chosen[1])) if chosen else "") or spec.default
        elif step == _MESSAGE:
            record[name] = message
        elif step == _TIME:
            record[name] = _pop_time(flat, spec, fallback_time, limits)
        elif step == _LEVEL:
            record[name] = _pop_level(flat, spec, message)
        else:
            chosen = picked.get(name)
            key = chosen[1] if chosen else None
            value = flat.pop(key) if chosen else None
            record[name] = _int_field(spec, value) if step == _INT else \
                _float_field(spec, value, 1e-6 if key in _NANOSECOND_DURATIONS else 1.0)

    given_id = flat.pop("record_id", None)
    if given_id is not None and (isinstance(given_id, bool) or not isinstance(given_id, (str, int))):
        raise NotALogError("record_id must be a string")
    record["record_id"] = str(given_id) if given_id not in (None, "") else record_id
    if len(record["record_id"]) > RECORD_ID.max_length:
        raise NotALogError(f"record_id is longer than {RECORD_ID.max_length} characters")

    given_attributes = obj.get("attributes")
    merged = attribute_map(given_attributes) if isinstance(given_attributes, dict) else {}
    for key, value in flat.items():
        # Null, and a field's key with an empty value, is an absent field, not an attribute.
        if value is None or (value == "" and key in _FIELD_KEYS):
            continue
        merged[key] = value if isinstance(value, str) else attribute_value(value)
    if len(merged) > limits.max_attributes:
        raise NotALogError(f"{len(merged)} attributes, over the limit of {limits.max_attributes} "
                           "(LOGPIPE_MAX_ATTRIBUTES)")
    # In key order, so both ingest paths store the same map whatever order a shipper wrote.
    record["attributes"] = dict(sorted(merged.items()))
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
                   partition: int, offset: int, max_bytes: int,
                   limits: RecordLimits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
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
            if "resourceLogs" in parsed or "resource_logs" in parsed:
                try:
                    objects = otlp_json_records(parsed)
                except (AttributeError, TypeError, ValueError, KeyError, RecursionError) as exc:
                    raise NotALogError(f"malformed OTLP logs payload: {type(exc).__name__}: {exc}") from exc
            else:
                objects = [parsed]
            if not objects:
                raise NotALogError("OTLP payload holds no log records")
            return [
                normalize_object(obj, fallback_time, derived_record_id(topic, partition, offset, index), limits)
                for index, obj in enumerate(objects)
            ]
    return [text_record(stripped, fallback_time, derived_record_id(topic, partition, offset))]


def text_record(line: str, timestamp: datetime, record_id: str) -> dict[str, Any]:
    """A plain text line is a log: the line is the message, the level is read from it."""
    record: dict[str, Any] = {spec.name: spec.default for spec in FIELDS}
    record.update(message=line, timestamp=timestamp, level=infer_level(line), record_id=record_id,
                  attributes={"format": "text"})
    return record


__all__ = ["NotALogError", "RecordLimits", "DEFAULT_LIMITS", "check_shape", "decode_message", "normalize_object", "parse_timestamp",
           "otlp_json_records", "text_record", "flatten", "Level"]
