"""Hostile input, driven by `hostile_corpus.jsonl` (one case a line; the format is at its top).

Every case is sent, as each of its targets, to the real services: Kafka cases are produced to
raw-logs and consumed by the real ingest service; HTTP cases go to the real gateway's ingest
routes (OTLP protobuf and JSON, Loki snappy protobuf and JSON, JSON lines), whose records the
same ingest stores. Each must end as the corpus says: stored and read back byte for byte from
`GET /api/logs`, refused with that 4xx and a JSON `detail` naming the problem, or dead-lettered
with that reason. After each refused or dead-lettered case the ingest service still stores a
good log (it did not stall or crash), and cases with `max_rss_mb` bound the growth of the
process's peak RSS (the gateway and ingest both run in this process, as `logpipe run all` does).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import select
import socket
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import snappy
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logpipe.core.record import FIELDS, format_timestamp
from support import wait_until

CORPUS = Path(__file__).with_name("hostile_corpus.jsonl")
HTTP_TARGETS = ("jsonlines", "otlp-json", "otlp-proto", "loki-json", "loki-proto")
TARGETS = ("kafka", *HTTP_TARGETS)
ROUTES = {"jsonlines": ("/api/ingest", "application/x-ndjson"),
          "otlp-json": ("/v1/logs", "application/json"),
          "otlp-proto": ("/v1/logs", "application/x-protobuf"),
          "loki-json": ("/loki/api/v1/push", "application/json"),
          "loki-proto": ("/loki/api/v1/push", "application/x-protobuf")}
_RELATIVE_TIME = re.compile(r"^@now([+-])(\d+)([smhdy])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}


# -- the corpus ------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    targets: tuple[str, ...]
    payload: dict[str, Any]
    expect: dict[str, str]
    max_rss_mb: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def expectation(self, target: str) -> str:
        group = "kafka" if target == "kafka" else "http"
        return self.expect.get(target) or self.expect.get(group) or self.expect["all"]


def load_corpus() -> list[Case]:
    cases = []
    # split("\n"), not splitlines(): a case may hold U+2028, U+0085, \x0b ... in its strings.
    for number, line in enumerate(CORPUS.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = orjson.loads(line)
        targets = item["targets"]
        if isinstance(targets, str):
            targets = {"all": TARGETS, "http": HTTP_TARGETS}[targets]
        expect = item["expect"] if isinstance(item["expect"], dict) else {"all": item["expect"]}
        unknown = set(item) - {"name", "targets", "payload", "expect", "max_rss_mb", "fields", "headers"}
        assert not unknown, f"corpus line {number}: unknown keys {unknown}"
        assert set(targets) <= set(TARGETS), f"corpus line {number}: unknown target in {targets}"
        cases.append(Case(item["name"], tuple(targets), item["payload"], expect, item.get("max_rss_mb"),
                          item.get("fields", {}), item.get("headers", {})))
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    return cases


CASES = load_corpus()


# -- payloads: a log record encoded per target, raw bytes, or a generator ---------------------

def resolve_time(value: Any, now: datetime) -> Any:
    """`@now-3650d` style placeholders to an ISO 8601 time relative to the test's clock."""
    if isinstance(value, str) and (match := _RELATIVE_TIME.match(value)):
        sign, amount, unit = match.groups()
        delta = timedelta(seconds=int(amount) * _UNITS[unit])
        return format_timestamp(now + delta if sign == "+" else now - delta)
    return value


def time_ns(value: Any) -> int | None:
    """A record's timestamp as Unix nanoseconds (what OTLP and Loki carry), where it is one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000
    return None


def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": any_value(v)} for k, v in value.items()]}}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def otlp_request(record: dict[str, Any]) -> dict[str, Any]:
    record = dict(record)
    attributes = dict(record.pop("attributes", {}) or {})
    service, message, level = record.pop("service", None), record.pop("message", None), record.pop("level", None)
    stamp = record.pop("timestamp", None)
    attributes.update(record)
    log: dict[str, Any] = {"attributes": [{"key": k, "value": any_value(v)} for k, v in attributes.items()]}
    if message is not None:
        log["body"] = any_value(message)
    if level is not None:
        log["severityText"] = str(level)
    if (nanos := time_ns(stamp)) is not None:
        log["timeUnixNano"] = str(nanos)
    resource = {"attributes": [{"key": "service.name", "value": any_value(service)}]} if service else {}
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [log]}]}]}


def loki_stream(record: dict[str, Any], now: datetime) -> tuple[dict[str, str], int, str, dict[str, str]]:
    """Labels, time, line and structured metadata. A record with structured or non-text fields is
    sent as a JSON line (as promtail ships JSON application logs); else the line is the message."""
    record = dict(record)
    stamp = time_ns(record.pop("timestamp", None)) or int(now.timestamp() * 1e9)
    labels = {"service_name": str(record.pop("service"))} if "service" in record else {}
    if "level" in record:
        labels["level"] = str(record.pop("level"))
    attributes = dict(record.pop("attributes", None) or {})
    # A generated label set (`labels` in gen_record) is sent as stream labels, as a shipper would.
    labels.update({name: attributes.pop(name) for name in list(attributes) if name.startswith("label_")})
    plain = isinstance(record.get("message"), str) and all(isinstance(v, str) for v in (*record.values(),
                                                                                       *attributes.values()))
    plain = plain and all(not isinstance(v, (dict, list)) for v in attributes.values())
    if plain:
        metadata = {k: v for k, v in record.items() if k != "message"} | attributes
        return labels, stamp, record["message"], metadata
    if attributes:
        record["attributes"] = attributes
    return labels, stamp, orjson.dumps(record).decode(), {}


def label_text(labels: dict[str, str]) -> str:
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for value in labels.values())
    return "{" + ", ".join(f'{name}="{value}"' for name, value in zip(labels, escaped)) + "}"


def encode_record(target: str, record: dict[str, Any], now: datetime) -> bytes:
    if target == "kafka":
        return orjson.dumps(record)
    if target == "jsonlines":
        return orjson.dumps(record) + b"\n"
    if target == "otlp-json":
        return orjson.dumps(otlp_request(record))
    if target == "otlp-proto":
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        return json_format.ParseDict(otlp_request(record), ExportLogsServiceRequest()).SerializeToString()
    labels, stamp, line, metadata = loki_stream(record, now)
    if target == "loki-json":
        entry: list[Any] = [str(stamp), line] + ([metadata] if metadata else [])
        return orjson.dumps({"streams": [{"stream": labels, "values": [entry]}]})
    from logpipe.gateway.protocols.loki import PushRequest

    request = PushRequest()
    stream = request.streams.add(labels=label_text(labels))
    item = stream.entries.add(line=line)
    item.timestamp.seconds, item.timestamp.nanos = divmod(stamp, 1_000_000_000)
    for name, value in metadata.items():
        item.structuredMetadata.add(name=name, value=value)
    return snappy.compress(request.SerializeToString())


def substitute(value: Any, marker: str, now: datetime) -> Any:
    if isinstance(value, str):
        return resolve_time(value, now).replace("{marker}", marker)
    if isinstance(value, dict):
        return {substitute(k, marker, now): substitute(v, marker, now) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, marker, now) for v in value]
    return value


def nested(depth: int, leaf: Any = "bottom") -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = {"d": value}
    return value


def gen_record(args: dict[str, Any], marker: str) -> dict[str, Any]:
    """A record made big or deep by `args` (kept out of the corpus so the file stays small)."""
    record: dict[str, Any] = {"message": args.get("message", "generated {marker}").replace("{marker}", marker),
                              "service": marker, "level": "INFO"}
    if "message_bytes" in args:
        unit = args.get("unit", "x")
        record["message"] = marker + " " + unit * ((args["message_bytes"] - len(marker)) // len(unit))
    if "depth" in args:
        record["attributes"] = {"nest": nested(args["depth"])}
    if "list_depth" in args:
        inner: Any = "bottom"
        for _ in range(args["list_depth"]):
            inner = [inner]
        record["attributes"] = {"nest": inner}
    if "attributes" in args:
        record["attributes"] = {f"a{i}": "v" for i in range(args["attributes"])}
    if "labels" in args:
        # Flat text fields: Loki targets send them as labels/structured metadata, others as attributes.
        record["attributes"] = {f"label_{i}": "x" for i in range(args["labels"])}
    return record


@functools.lru_cache(maxsize=2)
def gzip_stream(size: int) -> bytes:
    """`size` bytes of zeros, gzip-compressed (about 1,000:1) without holding them in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    parts = [packer.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(packer.flush())
    return b"".join(parts)


@dataclass
class Request:
    body: bytes | None = None
    chunks: Iterator[bytes] | None = None
    length: int | None = None  # Content-Length to declare with `chunks` (None: chunked)
    headers: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # what a stored-verbatim case must read back


def build_request(case: Case, target: str, marker: str, now: datetime) -> Request:
    payload = case.payload
    headers = dict(case.headers)
    if "record" in payload:
        record = substitute(payload["record"], marker, now)
        record.setdefault("service", marker)
        return Request(encode_record(target, record, now), headers=headers, record=record)
    if "raw" in payload or "raw_base64" in payload:
        raw = payload.get("raw", payload.get("raw_base64"))
        text = raw.get(target, raw.get("kafka" if target == "kafka" else "http", raw.get("all")))
        assert text is not None, f"{case.name}: no raw payload for {target}"
        text = text.replace("{marker}", marker)
        body = base64.b64decode(text) if "raw_base64" in payload else text.encode("utf-8", "surrogatepass")
        if payload.get("snappy") and target == "loki-proto":
            body = snappy.compress(body)
        return Request(body, headers=headers)
    generator, args = payload["gen"], payload.get("args", {})
    if generator == "record":
        record = gen_record(args, marker)
        return Request(encode_record(target, record, now), headers=headers, record=record)
    if generator == "deep_json":
        # Deeper than any JSON encoder writes (orjson stops at 255): the text is built by hand.
        depth = args["depth"]
        deep = '{"d":' * depth + "1" + "}" * depth
        body = {"otlp-json": '{"resourceLogs":%s}', "loki-json": '{"streams":%s}'}.get(
            target, '{"message":"deep {marker}","service":"{marker}","attributes":%s}') % deep
        return Request(body.replace("{marker}", marker).encode() + (b"\n" if target == "jsonlines" else b""),
                       headers=headers)
    if generator == "repeat":
        # Many records in one request (one line or entry each).
        count = args["count"]
        line = orjson.dumps({"message": f"repeat {marker}", "service": marker}) + b"\n"
        return Request(line * count, headers=headers)
    if generator == "zeros":
        size = args["bytes"]
        block = b"\0" * (1 << 20)
        chunks = (block for _ in range(size // len(block)))
        return Request(chunks=chunks, length=size if args.get("declare_length", True) else None, headers=headers)
    if generator == "gzip_bomb":
        headers.setdefault("Content-Encoding", "gzip")
        return Request(gzip_stream(args["bytes"]), headers=headers)
    if generator == "snappy_claim":
        # A snappy block header declaring `bytes` of output, followed by a little data.
        length, varint = args["bytes"], bytearray()
        while True:
            byte = length & 0x7F
            length >>= 7
            varint.append(byte | (0x80 if length else 0))
            if not length:
                break
        return Request(bytes(varint) + b"\x00" * 64, headers=headers)
    raise AssertionError(f"{case.name}: unknown generator {generator!r}")


# -- the services ------------------------------------------------------------------------------

@dataclass
class Stack:
    gateway: Any
    bootstrap: str
    topics: Any
    ingest_url: str
    dlq: "DeadLetters"
    producer: Any


class DeadLetters:
    """Reads raw-logs-dlq in a thread; letters are looked up by their source offset."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hostile-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "fetch.message.max.bytes": 64 << 20})
        self.consumer.subscribe([topic])
        self.letters: dict[tuple[int, int], dict[str, Any]] = {}
        self.sizes: dict[tuple[int, int], int] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dlq-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            message = self.consumer.poll(0.2)
            if message is None or message.error():
                continue
            letter = orjson.loads(message.value())
            source = letter["source"]
            self.letters[(source["partition"], source["offset"])] = letter
            self.sizes[(source["partition"], source["offset"])] = len(message.value())

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.consumer.close()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, chdb_dsn, tmp_path_factory):
    """One gateway and one ingest service (each under uvicorn in its own thread), own topics and database."""
    import asyncio

    from confluent_kafka import Producer

    from gateway.gateway_support import ServerThread, gateway_settings, start_gateway
    from logpipe.core.broker import free_port
    from logpipe.core.topics import Topics, ensure_topics
    from logpipe.ingest.app import create_app as create_ingest
    from logpipe.ingest.settings import Settings as IngestSettings
    from logpipe.stores.clickhouse import ClickHouseStore

    prefix = f"h{uuid.uuid4().hex[:10]}-"
    topics = Topics(prefix)
    asyncio.run(ensure_topics(kafka_bootstrap, topics, partitions=1))
    store = ClickHouseStore(chdb_dsn, database=f"hostile_{uuid.uuid4().hex[:10]}")
    store.apply_schema(ttl_days=90)
    data_dir = tmp_path_factory.mktemp("hostile")
    gateway, gateway_server = start_gateway(gateway_settings(kafka_bootstrap, prefix, store, data_dir))
    ingest_port = free_port()
    ingest = ServerThread(create_ingest(IngestSettings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, clickhouse_url=store.dsn,
        clickhouse_database=store.database, batch_timeout_seconds=0.2, session_timeout_ms=2000,
        heartbeat_interval_ms=500, group_id=f"ingest-{prefix}", port=ingest_port)), ingest_port).start()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 16 << 20, "linger.ms": 0})
    dlq = DeadLetters(kafka_bootstrap, topics.raw_logs_dlq)
    try:
        yield Stack(gateway, kafka_bootstrap, topics, ingest.url, dlq, producer)
    finally:
        dlq.close()
        ingest.stop()
        gateway_server.stop()
        store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")
        store.close()


def produce(stack: Stack, value: bytes) -> tuple[int, int]:
    delivered: list[Any] = []
    stack.producer.produce(stack.topics.raw_logs, value, on_delivery=lambda err, msg: delivered.append((err, msg)))
    stack.producer.flush(30)
    assert delivered and delivered[0][0] is None, f"produce failed: {delivered}"
    message = delivered[0][1]
    return message.partition(), message.offset()


def read_logs(stack: Stack, **params) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.gateway.url}/api/logs", params={"limit": 10, "total": "false", **params},
                         headers=stack.gateway.headers("read"), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["logs"]


def stored(stack: Stack, service: str, count: int = 1) -> list[dict[str, Any]]:
    return wait_until(lambda: (logs := read_logs(stack, service=service)) and len(logs) >= count and logs,
                      timeout=30, message=f"no log of service {service!r} in /api/logs")


def post(stack: Stack, target: str, request: Request) -> tuple[int, dict[str, Any]]:
    path, content_type = ROUTES[target]
    headers = {"Content-Type": content_type, **stack.gateway.headers("ingest"), **request.headers}
    if target == "loki-proto":
        headers.setdefault("Content-Encoding", "snappy")
    if request.chunks is not None:
        return stream_post(stack.gateway.url + path, headers, request.chunks, request.length)
    response = httpx.post(stack.gateway.url + path, content=request.body, headers=headers, timeout=60)
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {"not_json": response.text[:200]}
    return response.status_code, body


def stream_post(url: str, headers: dict[str, str], chunks: Iterator[bytes],
                length: int | None) -> tuple[int, dict[str, Any]]:
    """POST a body too big to hold, stopping as soon as the server answers (an early 413).

    A plain socket: HTTP clients write the whole body before reading, and a server that
    refused it early has closed the connection by then."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        answer = b""

        for chunk in chunks:
            data = chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            view = memoryview(data)
            while view:
                readable, writable, _ = select.select([sock], [sock], [], 30)
                if readable:
                    break
                try:
                    sent = sock.send(view)
                except (ConnectionResetError, BrokenPipeError):
                    # The server answered and closed between select and send; its answer
                    # is still in the receive queue, read below (the kernel returns it first).
                    readable = [sock]
                    break
                view = view[sent:]
            if readable:
                break
        else:
            if length is None:
                sock.sendall(b"0\r\n\r\n")
        sock.setblocking(True)
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    body = answer.split(b"\r\n\r\n", 1)[1]
    if b"transfer-encoding: chunked" in answer.split(b"\r\n\r\n", 1)[0].lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return status, orjson.loads(body) if body.strip() else {}


class PeakMemory:
    """The growth of this process's peak RSS over a block: the kernel's high-water mark (VmHWM),
    reset at the start by writing 5 to /proc/self/clear_refs."""

    def __enter__(self) -> "PeakMemory":
        Path("/proc/self/clear_refs").write_text("5")
        self.start_kb = self._status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.growth_mb = max(0, self._status("VmHWM") - self.start_kb) / 1024

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{key} not in /proc/self/status")


def still_ingests(stack: Stack) -> None:
    """A good log after the hostile one is stored: nothing stalled or crashed."""
    canary = f"canary-{uuid.uuid4().hex[:12]}"
    produce(stack, orjson.dumps({"message": "still alive", "service": canary}))
    stored(stack, canary)
    assert httpx.get(f"{stack.ingest_url}/health", timeout=10).status_code == 200


# -- generated input: what the corpus does not think of --------------------------------------
# (before the corpus test, so they run before its services start: their threads use `random`,
# which hypothesis would mistake for the strategies using it)

_KEYS = st.sampled_from(sorted({alias for spec in FIELDS for alias in spec.aliases} - {"record_id"})) | \
    st.text(max_size=6)
_LEAVES = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1) | st.floats() |
           st.text(max_size=20) | st.sampled_from(["", "ERROR", "2026-12-06T10:00:00Z", "9999-01-01", "1e400", "\x00"]))
_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
                       max_leaves=40)
_OBJECTS = st.dictionaries(_KEYS, _VALUES, max_size=8)
_MESSAGES = st.lists(st.one_of(_OBJECTS.map(orjson.dumps), st.binary(max_size=64),
                               _OBJECTS.map(lambda obj: orjson.dumps({"resourceLogs": [{"scopeLogs": [
                                   {"logRecords": [obj]}]}]}))), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MESSAGES)
def test_generated_kafka_messages_end_as_rows_or_dead_letters(values):
    """Whatever the bytes, ingest's batch build returns: each message is stored or dead-lettered
    with a reason, never an exception (which the consumer would retry forever on one partition)."""
    from logpipe.core.shippers import RecordLimits
    from logpipe.ingest.service import BatchBuilder, RawMessage

    messages = [RawMessage(value, None, "raw-logs", 0, offset) for offset, value in enumerate(values)]
    batch = BatchBuilder(limits=RecordLimits(max_age_days=90)).build(messages)
    stored = set(batch.rows["kafka_offset"].to_pylist())
    dead = {letter.message.offset for letter in batch.dead_letters}
    assert all(letter.error for letter in batch.dead_letters)
    assert not stored & dead and stored | dead == set(range(len(values)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_OBJECTS.map(orjson.dumps), st.binary(max_size=64),
                 _VALUES.map(lambda value: orjson.dumps({"resourceLogs": value})),
                 _VALUES.map(lambda value: orjson.dumps({"streams": [{"stream": {"app": "a"}, "values": value}]}))))
def test_generated_bodies_are_decoded_or_refused_with_a_client_error(body):
    """Every HTTP decoder answers with records or a ProtocolError (a 4xx with the reason), never a 500."""
    from logpipe.gateway.protocols import ProtocolError, jsonlines, loki, otlp

    now = datetime.now(timezone.utc)
    limits = {"max_records": 100, "max_record_bytes": 1 << 20}
    for decode in (lambda: jsonlines.decode(body, now, **limits),
                   lambda: otlp.decode(body, "application/json", now, **limits),
                   lambda: otlp.decode(body, "application/x-protobuf", now, **limits),
                   lambda: loki.decode(body, "application/json", None, now, max_body_bytes=1 << 20, **limits),
                   lambda: loki.decode(body, "application/x-protobuf", "snappy", now, max_body_bytes=1 << 20, **limits)):
        try:
            records = decode()
        except ProtocolError as exc:
            assert 400 <= exc.status < 500 and exc.detail
        else:
            assert all(isinstance(record.get("message"), str) for record in records)


# -- the test ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case,target", [pytest.param(case, target, id=f"{case.name}[{target}]")
                                         for case in CASES for target in case.targets])
def test_hostile_input(stack, case: Case, target: str):
    expected = case.expectation(target)
    marker = f"h{uuid.uuid4().hex[:16]}"
    now = datetime.now(timezone.utc)
    request = build_request(case, target, marker, now)
    with PeakMemory() as memory:
        if target == "kafka":
            assert request.body is not None, f"{case.name}: a Kafka case needs a bounded payload"
            where = produce(stack, request.body)
            if expected.startswith("dlq:"):
                letter = wait_until(lambda: stack.dlq.letters.get(where), timeout=60,
                                    message=f"no dead letter for {case.name} at {where}")
        else:
            status, body = post(stack, target, request)

    if expected.startswith("4xx:"):
        _, code, *detail = expected.split(":", 2)
        assert status == int(code), f"{case.name}[{target}]: {status} {body}"
        assert isinstance(body.get("detail"), str) and body["detail"], body
        if detail:
            assert re.search(detail[0], body["detail"]), f"{body['detail']!r} does not match {detail[0]!r}"
    elif expected.startswith("dlq:"):
        assert target == "kafka"
        assert re.search(expected[4:], letter["error"]), f"{letter['error']!r} does not match {expected[4:]!r}"
        assert letter["stage"] == "decode"
        original = base64.b64decode(letter["original_base64"])
        if letter.get("original_truncated"):
            # Too big to carry whole (core/dlq.py): a prefix, the size and the digest of the rest.
            assert request.body.startswith(original) and letter["original_bytes"] == len(request.body)
            assert letter["original_sha256"] == hashlib.sha256(request.body).hexdigest()
        else:
            assert original == request.body, "the dead letter lost the original"
    elif expected == "stored-verbatim":
        if target != "kafka":
            assert status in (200, 204), f"{case.name}[{target}]: {status} {body}"
        assert request.record is not None
        service = request.record["service"]
        logs = stored(stack, service)
        assert len(logs) == 1, f"{len(logs)} logs stored for one sent"
        assert logs[0]["message"] == request.record["message"], "the message was not stored byte for byte"
        assert logs[0]["service"] == service
        for name, value in case.fields.items():
            got = logs[0][name] if name in logs[0] else logs[0]["attributes"].get(name)
            if value == "@recent":
                # Clamped to the arrival time (the request's, or the Kafka timestamp).
                stamp = datetime.fromisoformat(got.replace("Z", "+00:00"))
                assert abs(stamp - now) < timedelta(minutes=10), f"{name}: {got!r} is not the arrival time"
            else:
                assert got == substitute(value, marker, now), f"{name}: {got!r}"
    else:
        raise AssertionError(f"{case.name}: unknown expectation {expected!r}")

    if case.max_rss_mb is not None:
        assert memory.growth_mb <= case.max_rss_mb, \
            f"peak RSS grew {memory.growth_mb:.0f} MB, over the {case.max_rss_mb} MB bound"
        print(f"{case.name}[{target}]: peak RSS growth {memory.growth_mb:.1f} MB (bound {case.max_rss_mb} MB)")
    if expected != "stored-verbatim":
        still_ingests(stack)

