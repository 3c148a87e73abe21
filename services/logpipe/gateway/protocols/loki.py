"""Loki push (POST /loki/api/v1/push): JSON, and snappy-compressed protobuf `logproto.PushRequest`.

The push messages are small, so they are described here in code (same field numbers as
Loki's `push.proto`) instead of shipping generated code.

Each entry becomes one record: stream labels and structured metadata are fields (so
`service_name`, `app`, `level`, `severity`, `logger` ... land where they belong), the line
is the message, or, when the line is a JSON object, its fields are read like any JSON log.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Iterator

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError

from logpipe.core.shippers import ALIASES, DEFAULT_LIMITS, RecordLimits
from logpipe.gateway.protocols.common import ProtocolError, check_count, finish_records, snappy_decompress

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_SERVICE_KEYS = frozenset(ALIASES["service"])


def _build_push_request_class():
    pool = descriptor_pool.DescriptorPool()
    timestamp_file = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp_file)
    pool.Add(timestamp_file)

    proto = descriptor_pb2.FileDescriptorProto(
        name="logpipe/loki_push.proto", package="logproto", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"])
    field = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]]) -> None:
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            item = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                item.type_name = type_name

    message("LabelPairAdapter", [("name", 1, field.TYPE_STRING, optional, None),
                                 ("value", 2, field.TYPE_STRING, optional, None)])
    message("EntryAdapter", [("timestamp", 1, field.TYPE_MESSAGE, optional, ".google.protobuf.Timestamp"),
                             ("line", 2, field.TYPE_STRING, optional, None),
                             ("structuredMetadata", 3, field.TYPE_MESSAGE, repeated, ".logproto.LabelPairAdapter")])
    message("StreamAdapter", [("labels", 1, field.TYPE_STRING, optional, None),
                              ("entries", 2, field.TYPE_MESSAGE, repeated, ".logproto.EntryAdapter"),
                              ("hash", 3, field.TYPE_UINT64, optional, None)])
    message("PushRequest", [("streams", 1, field.TYPE_MESSAGE, repeated, ".logproto.StreamAdapter")])
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest = _build_push_request_class()

# Prometheus label selector syntax: {name="value", other="va\"lue"}
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n", "\\t": "\t"}


def parse_labels(text: str) -> dict[str, str]:
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ProtocolError(f"stream labels {text[:100]!r} are not of the form {{name=\"value\", ...}}")
    body = body[1:-1].strip()
    labels: dict[str, str] = {}
    position = 0
    while position < len(body):
        match = _LABEL.match(body, position)
        if not match:
            raise ProtocolError(f"cannot parse stream labels {text[:100]!r} near {body[position:position + 20]!r}")
        labels[match.group(1)] = re.sub(r'\\[\\"nt]', lambda m: _ESCAPES[m.group(0)], match.group(2))
        position = match.end()
    return labels


def _entry_object(labels: dict[str, str], metadata: dict[str, str], timestamp_ns: int, line: str) -> dict[str, Any]:
    obj: dict[str, Any] = {**labels, **metadata}
    parsed = None
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            parsed = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            parsed = None
    if isinstance(parsed, dict):
        obj.update(parsed)
    else:
        obj["message"] = line
    # Loki's entry time is the log's time (what Loki itself would store).
    obj["timestamp"] = timestamp_ns
    # Promtail names the service by `job`; use it only when nothing better says who logged.
    if "job" in labels and not _SERVICE_KEYS.intersection(obj):
        obj["service"] = labels["job"]
    return obj


def _json_timestamp(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{where}: timestamp {value!r} is not nanoseconds since the epoch") from exc
    if number <= 0:
        raise ProtocolError(f"{where}: timestamp must be positive nanoseconds since the epoch")
    return number


def check_labels(labels: dict[str, str], max_labels: int, where: str) -> None:
    """Loki refuses a stream with more label names than `max_label_names_per_series` (15 there);
    labels are fields here, not series, so the limit is looser but still there."""
    if len(labels) > max_labels:
        raise ProtocolError(f"{where}: {len(labels)} stream labels, over the limit of {max_labels} "
                            "(GATEWAY_MAX_LABELS_PER_STREAM)")


def json_objects(body: bytes, max_labels: int = 64) -> Iterator[dict[str, Any]]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("streams"), list):
        raise ProtocolError('a Loki push is an object {"streams": [{"stream": {...}, "values": [...]}]}')
    for stream_index, stream in enumerate(payload["streams"]):
        where = f"streams[{stream_index}]"
        if not isinstance(stream, dict):
            raise ProtocolError(f"{where} must be an object")
        labels = stream.get("stream", stream.get("labels", {}))
        if isinstance(labels, str):
            labels = parse_labels(labels)
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ProtocolError(f"{where}.stream must be an object of string labels")
        check_labels(labels, max_labels, f"{where}.stream")
        values = stream.get("values")
        if not isinstance(values, list):
            raise ProtocolError(f"{where}.values must be a list of [timestamp_ns, line] pairs")
        for value_index, entry in enumerate(values):
            entry_where = f"{where}.values[{value_index}]"
            if not isinstance(entry, list) or len(entry) not in (2, 3) or not isinstance(entry[1], str):
                raise ProtocolError(f"{entry_where} must be [\"<unix ns>\", \"<line>\"] "
                                    "(optionally with a structured-metadata object)")
            metadata = entry[2] if len(entry) == 3 else {}
            if not isinstance(metadata, dict):
                raise ProtocolError(f"{entry_where}: structured metadata must be an object")
            yield _entry_object(labels, {k: str(v) for k, v in metadata.items()},
                                _json_timestamp(entry[0], entry_where), entry[1])


def protobuf_objects(body: bytes, max_labels: int = 64) -> Iterator[dict[str, Any]]:
    request = PushRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ProtocolError(f"body is not a Loki PushRequest protobuf: {exc}") from exc
    for index, stream in enumerate(request.streams):
        labels = parse_labels(stream.labels)
        check_labels(labels, max_labels, f"streams[{index}]")
        for entry in stream.entries:
            timestamp_ns = entry.timestamp.seconds * 1_000_000_000 + entry.timestamp.nanos
            if timestamp_ns <= 0:
                timestamp_ns = int(datetime.now(timezone.utc).timestamp() * 1e9)
            metadata = {pair.name: pair.value for pair in entry.structuredMetadata}
            yield _entry_object(labels, metadata, timestamp_ns, entry.line)


def decode(body: bytes, content_type: str | None, content_encoding: str | None, fallback_time: datetime, *,
           max_body_bytes: int, max_records: int, max_record_bytes: int, max_labels: int = 64,
           limits: RecordLimits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in (PROTOBUF, "application/protobuf"):
        # Loki's protobuf push is snappy-compressed (block format) by every client.
        if (content_encoding or "").strip().lower() != "snappy":
            body = snappy_decompress(body, max_body_bytes)
        objects = list(protobuf_objects(body, max_labels))
    elif kind == JSON or kind == "":
        objects = list(json_objects(body, max_labels))
    else:
        raise ProtocolError(f"unsupported Content-Type {content_type!r}; Loki push uses {PROTOBUF} "
                            f"(snappy) or {JSON}", 415)
    check_count(len(objects), max_records)
    return finish_records(objects, fallback_time, max_records=max_records,
                          max_record_bytes=max_record_bytes, where="entry", limits=limits)


def encode_push_request(streams: list[tuple[str, list[tuple[int, str]]]]) -> bytes:
    """A PushRequest protobuf (uncompressed): for tests and tools that speak Loki."""
    request = PushRequest()
    for labels, entries in streams:
        stream = request.streams.add(labels=labels)
        for timestamp_ns, line in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(timestamp_ns, 1_000_000_000)
    return request.SerializeToString()
