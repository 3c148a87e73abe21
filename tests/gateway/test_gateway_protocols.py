"""The ingest decoders, called with plain bytes (no server)."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone

import orjson
import pytest
import snappy
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1 import common_pb2

from logpipe.gateway.protocols import ProtocolError, decompress, jsonlines, loki, otlp

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
LIMITS = dict(max_records=100, max_record_bytes=64 * 1024)


def otlp_request() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for key, value in (("service.name", "payments"), ("service.version", "1.4.2"), ("host.name", "node-3"),
                       ("k8s.pod.name", "payments-7d9f"), ("deployment.environment", "prod")):
        resource_logs.resource.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "payments.charge"
    log = scope_logs.log_records.add(time_unix_nano=1_772_366_400_123_000_000, severity_number=17,
                                     severity_text="ERROR",
                                     trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
                                     span_id=bytes.fromhex("b7ad6b7169203331"))
    log.body.string_value = "card declined"
    log.attributes.add(key="http.status_code", value=common_pb2.AnyValue(int_value=502))
    log.attributes.add(key="exception.type", value=common_pb2.AnyValue(string_value="CardError"))
    log.attributes.add(key="retry", value=common_pb2.AnyValue(bool_value=True))
    empty = scope_logs.log_records.add(time_unix_nano=1_772_366_400_124_000_000, severity_number=9)
    empty.attributes.add(key="event.name", value=common_pb2.AnyValue(string_value="checkout.started"))
    return request


def test_otlp_protobuf_maps_resource_and_attributes_to_fields():
    records = otlp.decode(otlp_request().SerializeToString(), "application/x-protobuf", NOW, **LIMITS)
    assert len(records) == 2
    record = records[0]
    assert record["service"] == "payments" and record["version"] == "1.4.2"
    assert record["host"] == "node-3" and record["pod"] == "payments-7d9f" and record["environment"] == "prod"
    assert record["level"] == "ERROR" and record["message"] == "card declined"
    assert record["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and record["span_id"] == "b7ad6b7169203331"
    assert record["http_status"] == 502 and record["error_type"] == "CardError"
    assert record["logger"] == "payments.charge"
    assert record["timestamp"] == "2026-03-01T12:00:00.123Z"
    assert record["attributes"]["retry"] == "true"
    assert record["record_id"]
    assert records[1]["message"] == "checkout.started" and records[1]["level"] == "INFO"


def test_otlp_json_and_protobuf_agree():
    from google.protobuf import json_format

    request = otlp_request()
    as_json = json_format.MessageToDict(request)
    # OTLP/JSON carries ids as hex (the protobuf JSON mapping would use base64).
    for log in as_json["resourceLogs"][0]["scopeLogs"][0]["logRecords"]:
        for key, raw in (("traceId", "0af7651916cd43dd8448eb211c80319c"), ("spanId", "b7ad6b7169203331")):
            if key in log:
                log[key] = raw
    from_json = otlp.decode(orjson.dumps(as_json), "application/json; charset=utf-8", NOW, **LIMITS)
    from_proto = otlp.decode(request.SerializeToString(), "application/x-protobuf", NOW, **LIMITS)
    assert from_json == from_proto


def test_otlp_refuses_garbage_with_reasons():
    with pytest.raises(ProtocolError, match="protobuf"):
        otlp.decode(b"\xff\xff\xff\xff", "application/x-protobuf", NOW, **LIMITS)
    with pytest.raises(ProtocolError, match="resourceLogs"):
        otlp.decode(b'{"hello": 1}', "application/json", NOW, **LIMITS)
    with pytest.raises(ProtocolError) as error:
        otlp.decode(b"{}", "text/plain", NOW, **LIMITS)
    assert error.value.status == 415
    with pytest.raises(ProtocolError) as error:
        otlp.decode(otlp_request().SerializeToString(), "application/x-protobuf", NOW,
                    max_records=1, max_record_bytes=64 * 1024)
    assert error.value.status == 413


def test_loki_protobuf_snappy_and_json():
    body = loki.encode_push_request([
        ('{service_name="checkout", level="error", namespace="shop"}',
         [(1_772_366_400_000_000_001, "payment failed for order 7"),
          (1_772_366_401_000_000_000, '{"message": "json line", "user_id": "u-9", "level": "warn"}')]),
        ('{job="nginx"}', [(1_772_366_402_000_000_000, "GET /health 200")]),
    ])
    records = loki.decode(snappy.compress(body), "application/x-protobuf", None, NOW,
                          max_body_bytes=1 << 20, **LIMITS)
    assert [r["message"] for r in records] == ["payment failed for order 7", "json line", "GET /health 200"]
    assert records[0]["service"] == "checkout" and records[0]["level"] == "ERROR"
    assert records[0]["namespace"] == "shop" and records[0]["timestamp"] == "2026-03-01T12:00:00.000Z"
    assert records[1]["user_id"] == "u-9" and records[1]["level"] == "WARN"
    assert records[2]["service"] == "nginx" and records[2]["level"] == "INFO"

    payload = {"streams": [{"stream": {"application": "billing", "severity": "warning", "logger": "billing.jobs"},
                            "values": [["1772366400000000000", "slow invoice run"],
                                       ["1772366400500000000", "retrying", {"trace_id": "abc123"}]]}]}
    records = loki.decode(orjson.dumps(payload), "application/json", None, NOW, max_body_bytes=1 << 20, **LIMITS)
    assert [(r["service"], r["level"], r["logger"]) for r in records] == [("billing", "WARN", "billing.jobs")] * 2
    assert records[1]["trace_id"] == "abc123"


def test_loki_labels_and_errors():
    assert loki.parse_labels('{a="1", b="x \\"quoted\\" y",c="",}') == {"a": "1", "b": 'x "quoted" y', "c": ""}
    with pytest.raises(ProtocolError, match="labels"):
        loki.parse_labels("a=1")
    with pytest.raises(ProtocolError, match="snappy"):
        loki.decode(b"not snappy at all", "application/x-protobuf", None, NOW, max_body_bytes=1 << 20, **LIMITS)
    with pytest.raises(ProtocolError, match="values"):
        loki.decode(b'{"streams": [{"stream": {}, "values": [["x"]]}]}', "application/json", None, NOW,
                    max_body_bytes=1 << 20, **LIMITS)
    with pytest.raises(ProtocolError, match="nanoseconds"):
        loki.decode(b'{"streams": [{"stream": {}, "values": [["soon", "line"]]}]}', "application/json", None, NOW,
                    max_body_bytes=1 << 20, **LIMITS)
    # A snappy body that claims to inflate past the limit is refused before inflating.
    big = snappy.compress(b"x" * 100_000)
    with pytest.raises(ProtocolError) as error:
        loki.decode(big, "application/x-protobuf", None, NOW, max_body_bytes=50_000, **LIMITS)
    assert error.value.status == 413


def test_json_lines_formats_and_line_numbers():
    body = b"\n".join([
        b'{"timestamp": "2026-03-01T11:59:00Z", "service": "api", "level": "error", "message": "boom",'
        b' "trace_id": "t1", "custom": {"nested": 1}}',
        b'{"@timestamp": "2026-03-01T11:59:01Z", "log.level": "warn", "service.name": "ecs-app", "message": "ecs"}',
        b"",
        b"2026-03-01 11:59:02 ERROR plain text line",
    ])
    records = jsonlines.decode(body, NOW, **LIMITS)
    assert [(r["service"], r["level"]) for r in records] == [("api", "ERROR"), ("ecs-app", "WARN"), ("unknown", "ERROR")]
    assert records[0]["attributes"] == {"custom.nested": "1"} and records[0]["trace_id"] == "t1"
    assert records[2]["timestamp"] == "2026-03-01T12:00:00.000Z"  # no time in a text line: arrival time
    # Retrying the same request gives the same ids, so storage folds the duplicates.
    assert [r["record_id"] for r in jsonlines.decode(body, NOW, **LIMITS)] == [r["record_id"] for r in records]
    assert len({r["record_id"] for r in records}) == 3

    with pytest.raises(ProtocolError, match="line 2: malformed JSON"):
        jsonlines.decode(b'{"message": "ok"}\n{"message": ', NOW, **LIMITS)
    with pytest.raises(ProtocolError, match="line 1: .*message"):
        jsonlines.decode(b'{"no_message_here": 1}', NOW, **LIMITS)
    with pytest.raises(ProtocolError, match="http_status"):
        jsonlines.decode(b'{"message": "x", "http_status": 9000}', NOW, **LIMITS)
    with pytest.raises(ProtocolError) as error:
        jsonlines.decode(b"a\n" * 101, NOW, **LIMITS)
    assert error.value.status == 413 and "101 records" in error.value.detail
    with pytest.raises(ProtocolError) as error:
        jsonlines.decode(b'{"message": "' + b"x" * 70_000 + b'"}', NOW, **LIMITS)
    assert error.value.status == 413
    assert len(jsonlines.decode(b'[{"message": "a"}, {"message": "b"}]', NOW, **LIMITS)) == 2


def test_decompression_limits():
    assert decompress(gzip.compress(b"hello"), "gzip", 100) == b"hello"
    with pytest.raises(ProtocolError) as error:
        decompress(gzip.compress(b"\0" * 1_000_000), "gzip", 10_000)
    assert error.value.status == 413
    with pytest.raises(ProtocolError, match="gzip"):
        decompress(b"plain", "gzip", 100)
    with pytest.raises(ProtocolError) as error:
        decompress(b"x", "br", 100)
    assert error.value.status == 415
