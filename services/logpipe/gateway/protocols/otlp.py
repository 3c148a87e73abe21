"""OTLP/HTTP logs (POST /v1/logs): protobuf and JSON `ExportLogsServiceRequest`.

Protobuf is turned into the OTLP/JSON shape, then the same mapping the Kafka path uses
(`core.shippers.otlp_json_records`) maps resource and record attributes to record fields.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from logpipe.core.shippers import DEFAULT_LIMITS, RecordLimits, otlp_json_records
from logpipe.gateway.protocols.common import ProtocolError, check_count, finish_records

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _ids_to_hex(payload: dict[str, Any]) -> None:
    # The protobuf JSON mapping writes bytes as base64; OTLP/JSON writes trace and span ids as hex.
    for resource_logs in payload.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for log in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if log.get(key):
                        try:
                            log[key] = base64.b64decode(log[key]).hex()
                        except (binascii.Error, ValueError):
                            log.pop(key)


def protobuf_to_dict(body: bytes) -> dict[str, Any]:
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ProtocolError(f"body is not an OTLP ExportLogsServiceRequest protobuf: {exc}") from exc
    payload = json_format.MessageToDict(request, use_integers_for_enums=True)
    _ids_to_hex(payload)
    return payload


def json_to_dict(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ProtocolError("an OTLP/JSON request is an object with resourceLogs")
    resource_logs = payload.get("resourceLogs", payload.get("resource_logs"))
    if resource_logs is None:
        raise ProtocolError("an OTLP/JSON request needs resourceLogs")
    if not isinstance(resource_logs, list) or not all(isinstance(item, dict) for item in resource_logs):
        raise ProtocolError("resourceLogs must be a list of objects")
    for resource in resource_logs:
        for scope_logs in resource.get("scopeLogs") or resource.get("scope_logs") or []:
            for log in (scope_logs.get("logRecords") or scope_logs.get("log_records") or []
                        if isinstance(scope_logs, dict) else []):
                # Some senders write the enum's name where OTLP/JSON specifies its number.
                number = log.get("severityNumber") if isinstance(log, dict) else None
                if isinstance(number, str) and number in SeverityNumber.keys():
                    log["severityNumber"] = SeverityNumber.Value(number)
    return payload


def decode(body: bytes, content_type: str | None, fallback_time: datetime, *, max_records: int,
           max_record_bytes: int, limits: RecordLimits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    kind = media_type(content_type)
    if kind == PROTOBUF:
        payload = protobuf_to_dict(body)
    elif kind == JSON:
        payload = json_to_dict(body)
    else:
        raise ProtocolError(f"unsupported Content-Type {content_type!r}; OTLP/HTTP uses "
                            f"{PROTOBUF} or {JSON}", 415)
    try:
        objects = otlp_json_records(payload)
    except (AttributeError, TypeError, ValueError, KeyError, RecursionError) as exc:
        raise ProtocolError(f"malformed OTLP logs request: {type(exc).__name__}: {exc}") from exc
    check_count(len(objects), max_records)
    for obj in objects:
        # OTLP allows a record without a body (an event); it is still a log worth keeping.
        if obj.get("message") in (None, ""):
            obj["message"] = str(obj.get("event.name") or obj.get("event_name") or "(empty body)")
    return finish_records(objects, fallback_time, max_records=max_records,
                          max_record_bytes=max_record_bytes, where="log record", limits=limits)


def success_body(content_type: str | None) -> tuple[bytes, str]:
    """The OTLP response, encoded like the request (full success: no partial_success)."""
    if media_type(content_type) == PROTOBUF:
        return ExportLogsServiceResponse().SerializeToString(), PROTOBUF
    return b"{}", JSON
