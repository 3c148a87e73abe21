"""Ingest's domain logic: raw Kafka messages in, an Arrow table of log rows out.

Two paths build the same rows, from the one field table in core/record.py:
- the fast path parses a whole batch of canonical JSON records in C++ (`pyarrow.json`) and
  normalises columns with Arrow compute, with no Python work per record;
- the exact path decodes message by message (`core.shippers`), which accepts every shipper
  shape, a plain text line, and isolates each bad message with its reason for the DLQ.
A batch takes the fast path only when every record in it fits; otherwise the exact path.
"""

from __future__ import annotations

import functools
import io
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from logpipe.core.dlq import dead_letter
from logpipe.core.record import (
    FIELDS,
    FORWARDED_LEVELS,
    LEVEL_ALIASES,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    RECORD_ID,
    RECORD_SPECS,
    FieldSpec,
    Kind,
    Level,
    arrow_fields,
    derived_record_id,
)
from logpipe.core.shippers import DEFAULT_LIMITS, NotALogError, RecordLimits, decode_message


class RawMessage(NamedTuple):
    """What ingest needs of one Kafka record (aiokafka's ConsumerRecord has the same attributes)."""

    value: bytes | None
    timestamp: int | None  # milliseconds since the epoch, as Kafka gives it
    topic: str
    partition: int
    offset: int


# The `logs` columns ingest writes: the record's fields from the field table (core/record.py),
# then ingest's Kafka bookkeeping (the rest have defaults in sql/clickhouse/001_logs.sql).
LOG_SCHEMA = pa.schema(
    arrow_fields()
    + [pa.field("kafka_topic", pa.string(), nullable=False),
       pa.field("kafka_partition", pa.uint32(), nullable=False),
       pa.field("kafka_offset", pa.uint64(), nullable=False)]
)
_ATTRIBUTES_TYPE = LOG_SCHEMA.field("attributes").type

# What the fast path expects to find in a canonical record: the same table, as JSON types.
# Arrow's ISO 8601 parser reads the time while parsing (a number is an error: exact path).
_FAST_JSON_TYPES = {Kind.TIME: pa.timestamp("ns", tz="UTC"), Kind.TEXT: pa.string(), Kind.LEVEL: pa.string(),
                    Kind.INT: pa.int64(), Kind.FLOAT: pa.float64()}
_FAST_SCHEMA = pa.schema([(spec.name, _FAST_JSON_TYPES[spec.kind]) for spec in RECORD_SPECS
                          if spec.kind is not Kind.MAP])
_CANONICAL_LEVELS = pa.array([level.value for level in Level])
_ALIAS_KEYS = pa.array(list(LEVEL_ALIASES))
_ALIAS_VALUES = pa.array([level.value for level in LEVEL_ALIASES.values()])
_MIN_MS = int(MIN_TIMESTAMP.timestamp() * 1000)
_MAX_MS = int(MAX_TIMESTAMP.timestamp() * 1000)
_FORWARDED = pa.array(sorted(level.value for level in FORWARDED_LEVELS))
# Attribute values Arrow turns into the same text as the exact path's JSON form; a float
# (2.0 vs "2") or a nested value (key order, missing keys) would not, so those take the exact path.
_FAST_ATTRIBUTE_TYPES = (pa.types.is_string, pa.types.is_int64, pa.types.is_boolean, pa.types.is_null)


@dataclass
class RawBatch:
    """Consumed Kafka records column-wise: the fast path never makes a Python object per record."""

    values: list[bytes | None]
    timestamps: np.ndarray  # int64 ms since the epoch; <= 0 where Kafka gave none
    topics: list[str]
    partitions: np.ndarray  # int64
    offsets: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.values)

    def message(self, i: int) -> RawMessage:
        stamp = int(self.timestamps[i])
        return RawMessage(self.values[i], stamp if stamp > 0 else None, self.topics[i],
                          int(self.partitions[i]), int(self.offsets[i]))

    @classmethod
    def from_messages(cls, messages: Sequence[RawMessage]) -> "RawBatch":
        count = len(messages)
        return cls([m.value for m in messages],
                    np.fromiter((m.timestamp or 0 for m in messages), np.int64, count),
                    [m.topic for m in messages],
                    np.fromiter((m.partition for m in messages), np.int64, count),
                    np.fromiter((m.offset for m in messages), np.int64, count))

    @classmethod
    def from_confluent(cls, records: Sequence[Any]) -> "RawBatch":
        """confluent-kafka Messages (a timestamp of type 0, "not available", reads as none)."""
        count = len(records)
        stamps = np.array([m.timestamp() for m in records], np.int64).reshape(count, 2)
        return cls([m.value() for m in records],
                   np.where(stamps[:, 0] != 0, stamps[:, 1], 0),
                   [m.topic() for m in records],
                   np.fromiter((m.partition() for m in records), np.int64, count),
                   np.fromiter((m.offset() for m in records), np.int64, count))

    @classmethod
    def concat(cls, parts: Sequence["RawBatch"]) -> "RawBatch":
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls([], np.zeros(0, np.int64), [], np.zeros(0, np.int64), np.zeros(0, np.int64))
        return cls([v for p in parts for v in p.values], np.concatenate([p.timestamps for p in parts]),
                   [t for p in parts for t in p.topics], np.concatenate([p.partitions for p in parts]),
                   np.concatenate([p.offsets for p in parts]))

    def select(self, keep: np.ndarray) -> "RawBatch":
        index = np.flatnonzero(keep)
        values, topics = self.values, self.topics
        return RawBatch([values[i] for i in index], self.timestamps[index], [topics[i] for i in index],
                        self.partitions[index], self.offsets[index])

    @functools.cached_property
    def _partition_keys(self) -> tuple[list[tuple[str, int]], np.ndarray]:
        """The distinct (topic, partition) pairs, and each record's index into them (computed
        once: both the commit offsets and the replay skip need them)."""
        names = sorted(set(self.topics))
        if len(names) == 1:
            codes = self.partitions
        else:
            position = {name: i for i, name in enumerate(names)}
            codes = np.fromiter((position[t] for t in self.topics), np.int64, len(self)) << 32 | self.partitions
        unique, inverse = np.unique(codes, return_inverse=True)
        if len(names) == 1:
            return [(names[0], int(code)) for code in unique], inverse
        return [(names[int(code) >> 32], int(code) & 0xFFFFFFFF) for code in unique], inverse

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """The offset to commit per partition once these records are handled (highest + 1)."""
        if not len(self):
            return {}
        keys, inverse = self._partition_keys
        highest = np.full(len(keys), -1, np.int64)
        np.maximum.at(highest, inverse, self.offsets)
        return {key: int(offset) + 1 for key, offset in zip(keys, highest)}

    def skip_stored(self, stored: dict[tuple[str, int], int]) -> "RawBatch":
        """Drop records at or below the highest offset already in ClickHouse (a replay after a crash)."""
        if not stored or not len(self):
            return self
        keys, inverse = self._partition_keys
        floor = np.array([stored.get(key, -1) for key in keys], np.int64)
        keep = self.offsets > floor[inverse]
        return self if keep.all() else self.select(keep)


# Stored rows are looked up within this much of the replayed records' own times.
REPLAY_TIME_MARGIN = timedelta(days=1)


def replay_candidates(messages: RawBatch, stored: dict[tuple[str, int], int]) -> np.ndarray:
    """True where a record sits at or below its partition's stored watermark."""
    keys, inverse = messages._partition_keys
    floor = np.array([stored.get(key, -1) for key in keys], np.int64)
    return messages.offsets <= floor[inverse]


def candidates_by_partition(messages: RawBatch, candidates: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    keys, inverse = messages._partition_keys
    out = {}
    for code, key in enumerate(keys):
        index = np.flatnonzero(candidates & (inverse == code))
        if len(index):
            out[key] = index
    return out


def identify(messages: RawBatch, index: np.ndarray, max_bytes: int,
             limits: RecordLimits = DEFAULT_LIMITS) -> list[tuple[str, datetime] | None]:
    """The record id and time each message gets when stored (its first record's), or None for a
    message that is not a log (dead-lettered, so never in `logs`). `limits` must be the ones
    the batch is built with, or a record they change is not recognised as stored."""
    out: list[tuple[str, datetime] | None] = []
    for i in index:
        message = messages.message(int(i))
        try:
            records = decode_message(message.value, kafka_timestamp_ms=message.timestamp, topic=message.topic,
                                     partition=message.partition, offset=message.offset, max_bytes=max_bytes,
                                     limits=limits)
        except NotALogError:
            out.append(None)
            continue
        first = records[0]
        stamp = first.get("timestamp")
        if not isinstance(stamp, datetime) or not first.get("record_id"):
            out.append(None)
            continue
        out.append((str(first["record_id"]), stamp))
    return out


@dataclass
class DeadLetter:
    """A message that cannot be a log: the original bytes, why, where, when."""

    message: RawMessage
    error: str
    stage: str = "decode"
    failed_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_bytes(self) -> bytes:
        m = self.message
        return dead_letter(m.value, self.error, self.stage, self.failed_at, topic=m.topic,
                           partition=m.partition, offset=m.offset, timestamp_ms=m.timestamp)


@dataclass
class Batch:
    """The outcome of one batch: rows to store, and messages for the DLQ."""

    rows: pa.Table
    dead_letters: list[DeadLetter]
    fast_path: bool
    # Fast path: each row's original record, for forwarding without re-encoding it.
    raw_values: list[bytes] | None = None
    # The levels forwarded to the vectorizer (INGEST_VECTORIZE_LEVELS; WARN, ERROR, FATAL).
    forward_levels: pa.Array = field(default_factory=lambda: _FORWARDED)

    def forwarded(self) -> pa.Table:
        """Rows the vectorizer wants (by default WARN, ERROR, FATAL)."""
        if self.rows.num_rows == 0:
            return self.rows
        return self.rows.filter(pc.is_in(self.rows["level"], value_set=self.forward_levels))

    def forwarded_json(self) -> list[bytes]:
        """The forwarded rows as record JSON for vectorization-queue.

        On the fast path each original record is canonical JSON already: what ingest decided
        (normalised level and time, record id, pattern id, ...) is appended to it, and the
        last occurrence of a key wins, so no row is re-encoded whole.
        """
        if self.rows.num_rows == 0:
            return []
        if self.raw_values is None:
            return rows_to_json(self.forwarded())
        index = np.flatnonzero(pc.is_in(self.rows["level"], value_set=self.forward_levels).to_numpy(zero_copy_only=False))
        if not len(index):
            return []
        rows = self.rows.take(pa.array(index))
        columns = [pc.strftime(rows["timestamp"], format="%Y-%m-%dT%H:%M:%SZ").to_pylist()]
        columns += [rows[name].to_pylist() for name in _DECIDED]
        raw, dumps, out = self.raw_values, orjson.dumps, []
        for i, values in zip(index, zip(*columns)):
            out.append(raw[i].rstrip()[:-1] + b"," + dumps(dict(zip(_DECIDED_KEYS, values)))[1:])
        return out


class BatchBuilder:
    """Turns raw messages into rows; pure apart from the clock."""

    def __init__(self, pipeline: str = "default", max_record_bytes: int = 1_048_576,
                 forward_levels: Iterable[Level] = FORWARDED_LEVELS, limits: RecordLimits = DEFAULT_LIMITS) -> None:
        self.pipeline = pipeline
        self.max_record_bytes = max_record_bytes
        self.limits = limits
        self.forward_levels = pa.array(sorted({Level(level).value for level in forward_levels}), pa.string())

    def build(self, messages: RawBatch | Sequence[RawMessage]) -> Batch:
        batch = self._build(messages)
        batch.forward_levels = self.forward_levels
        return batch

    def _build(self, messages: RawBatch | Sequence[RawMessage]) -> Batch:
        if not isinstance(messages, RawBatch):
            messages = RawBatch.from_messages(messages)
        if not len(messages):
            return Batch(LOG_SCHEMA.empty_table(), [], True)
        fast = self._fast(messages)
        if fast is not None:
            table, keep = fast
            values = messages.values if keep is None else [v for v, k in zip(messages.values, keep) if k]
            return Batch(table, [], True, values)
        return self._exact(messages)

    # -- fast path -------------------------------------------------------------------------
    def _fast(self, messages: RawBatch) -> tuple[pa.Table, np.ndarray | None] | None:
        values = messages.values
        # Blank, oversized or non-object values need the exact path (checked on whole arrays).
        # A value holding a newline either fails to parse or yields more rows than values, and
        # both send the batch to the exact path below.
        if None in values:
            return None
        sizes = np.fromiter(map(len, values), np.int64, len(values))
        if sizes.min() == 0 or sizes.max() > self.max_record_bytes:
            return None
        data = b"\n".join(values)
        starts = np.cumsum(sizes + 1) - (sizes + 1)
        if (np.frombuffer(data, np.uint8)[starts] != 0x7B).any():
            return None
        try:
            parsed = pa_json.read_json(
                io.BytesIO(data),
                read_options=pa_json.ReadOptions(block_size=max(1 << 20, len(data) + 1)),
                parse_options=pa_json.ParseOptions(explicit_schema=_FAST_SCHEMA,
                                                   unexpected_field_behavior="infer"),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        if parsed.num_rows != len(messages):
            return None
        extra = [name for name in parsed.column_names if name not in _FAST_SCHEMA.names]
        if any(name != "attributes" for name in extra):
            return None

        kafka_ms = pa.array(np.where(messages.timestamps > 0, messages.timestamps, int(time.time() * 1000)))
        columns: dict[str, Any] = {}
        # The same field table and rules as core.shippers.normalize_object, column-wise; any
        # record the rules cannot settle here (a level to infer, a time to read another way,
        # a value out of bounds) sends the batch to the exact path, which applies them one by one.
        for spec in FIELDS:
            column = _fast_column(spec, parsed[spec.name], kafka_ms, self.limits)
            if column is None:
                return None
            columns[spec.name] = column

        record_id = parsed["record_id"]
        if record_id.null_count or pc.any(pc.equal(record_id, "")).as_py():
            ids = record_id.to_pylist()
            record_id = pa.array([rid or derived_record_id(topic, int(partition), int(offset))
                                  for rid, topic, partition, offset in zip(ids, messages.topics, messages.partitions,
                                                                           messages.offsets)], pa.string())
        if pc.max(pc.utf8_length(record_id)).as_py() > RECORD_ID.max_length:
            return None
        columns["record_id"] = record_id

        if "attributes" in extra:
            attributes = _attributes_column(parsed["attributes"], self.limits.max_attributes)
            if attributes is None:
                return None
        else:
            attributes = pa.array([[]] * len(messages), _ATTRIBUTES_TYPE)
        columns["attributes"] = attributes
        return self._finish(columns, messages)

    # -- exact path ------------------------------------------------------------------------
    def _exact(self, messages: RawBatch) -> Batch:
        records: list[dict[str, Any]] = []
        origins: list[RawMessage] = []
        dead: list[DeadLetter] = []
        for message in map(messages.message, range(len(messages))):
            try:
                decoded = decode_message(message.value, kafka_timestamp_ms=message.timestamp,
                                         topic=message.topic, partition=message.partition,
                                         offset=message.offset, max_bytes=self.max_record_bytes,
                                         limits=self.limits)
            except NotALogError as exc:
                dead.append(DeadLetter(message, str(exc)))
                continue
            records.extend(decoded)
            origins.extend([message] * len(decoded))
        if not records:
            return Batch(LOG_SCHEMA.empty_table(), dead, False)
        columns: dict[str, Any] = {}
        for spec in RECORD_SPECS:
            field = LOG_SCHEMA.field(spec.name)
            if spec.kind is Kind.MAP:
                values = [list(r[spec.name].items()) for r in records]
            elif spec.kind is Kind.LEVEL:
                values = [str(r[spec.name]) for r in records]
            else:
                values = [r[spec.name] for r in records]
            columns[spec.name] = pa.array(values, field.type)
        table, _ = self._finish(columns, RawBatch.from_messages(origins))
        return Batch(table, dead, False)

    def _finish(self, columns: dict[str, Any], origins: RawBatch) -> tuple[pa.Table, np.ndarray | None]:
        count = len(origins)
        columns["pattern_id"] = pa.array(np.zeros(count, dtype=np.uint64))
        columns["pipeline"] = pa.array([self.pipeline] * count, pa.string())
        columns["kafka_topic"] = pa.array(origins.topics, pa.string())
        columns["kafka_partition"] = pa.array(origins.partitions.astype(np.uint32))
        columns["kafka_offset"] = pa.array(origins.offsets.astype(np.uint64))
        table = pa.table(columns, schema=LOG_SCHEMA)
        keep = duplicate_free(table)
        return (table, None) if keep is None else (table.filter(pa.array(keep)), keep)


def _fast_column(spec: FieldSpec, column: pa.ChunkedArray, kafka_ms: pa.Array,
                 limits: RecordLimits = DEFAULT_LIMITS) -> Any:
    """One field of a parsed batch under the field table's rule for its kind, or None when a
    record needs the exact path (which then applies the same rule record by record)."""
    kind = spec.kind
    if kind is Kind.TIME:
        try:
            stamp = pc.cast(column, pa.timestamp("ms", tz="UTC"), safe=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        stamp = pc.coalesce(stamp, pc.cast(kafka_ms, pa.timestamp("ms", tz="UTC")))
        stamp_ms = pc.cast(stamp, pa.int64())
        if pc.min(stamp_ms).as_py() < _MIN_MS or pc.max(stamp_ms).as_py() >= _MAX_MS:
            return None
        # A time too far ahead of its Kafka timestamp and the clock is clamped, with the original
        # kept (core/shippers.py `_pop_time`): the exact path does that.
        now_ms = int(time.time() * 1000)
        reference = pc.max_element_wise(pc.cast(kafka_ms, pa.int64()), now_ms)
        if pc.max(pc.subtract(stamp_ms, reference)).as_py() > limits.max_future_skew_s * 1000:
            return None
        # Older than the retention: a dead letter with the reason, decided there.
        if limits.max_age_days is not None and pc.min(stamp_ms).as_py() < now_ms - limits.max_age_days * 86_400_000:
            return None
        return stamp
    if kind is Kind.LEVEL:
        # A missing or unknown level is read from the message: the exact path does that.
        if column.null_count:
            return None
        if pc.all(pc.is_in(column, value_set=_CANONICAL_LEVELS)).as_py():
            return column
        index = pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(column)), value_set=_ALIAS_KEYS)
        return None if index.null_count else pc.take(_ALIAS_VALUES, index)
    if kind is Kind.TEXT:
        if spec.required:
            # The exact path looks for the field under its other names, then refuses the record.
            return None if column.null_count or pc.any(pc.equal(column, "")).as_py() else column
        if spec.default:
            return pc.if_else(pc.fill_null(pc.equal(column, ""), True), spec.default, column)
        return pc.fill_null(column, "")
    # Numbers: null when absent; out of bounds (or not finite) is a dead letter, decided there.
    present = column.null_count < len(column)
    if present:
        low, high = pc.min(column).as_py(), pc.max(column).as_py()
        if (spec.minimum is not None and low < spec.minimum) or (spec.maximum is not None and high > spec.maximum):
            return None
        if kind is Kind.FLOAT and not pc.all(pc.is_finite(pc.drop_null(column))).as_py():
            return None
    return pc.cast(column, LOG_SCHEMA.field(spec.name).type)


def _attributes_column(column: pa.ChunkedArray, max_attributes: int = DEFAULT_LIMITS.max_attributes) -> pa.Array | None:
    """An inferred `attributes` object column to map<string, string>, in Arrow (no per-row Python).

    A struct of text, integer and boolean fields becomes one map entry per non-null field, in
    key order (as the exact path stores them); other values return None (the exact path).
    """
    struct = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    map_type = _ATTRIBUTES_TYPE
    rows = len(struct)
    if not pa.types.is_struct(struct.type):
        return None if struct.null_count < rows else pa.array([[]] * rows, map_type)
    if struct.type.num_fields > max_attributes:
        # Over the limit in the batch as a whole; the exact path decides record by record.
        return None
    order = sorted(range(struct.type.num_fields), key=lambda i: struct.type.field(i).name)
    fields = [struct.type.field(i) for i in order]
    if not fields:
        return pa.array([[]] * rows, map_type)
    if not all(any(check(f.type) for check in _FAST_ATTRIBUTE_TYPES) for f in fields):
        return None
    children = []
    valid = np.zeros((rows, len(fields)), dtype=bool)
    parent_valid = np.ones(rows, dtype=bool) if struct.null_count == 0 else \
        struct.is_valid().to_numpy(zero_copy_only=False)
    for position, index in enumerate(order):
        child = pc.cast(struct.field(index), pa.string())
        children.append(child)
        valid[:, position] = child.is_valid().to_numpy(zero_copy_only=False) & parent_valid
    # Row-major positions into the field-major concatenation of the children.
    positions = (np.arange(len(fields))[None, :] * rows + np.arange(rows)[:, None]).ravel()[valid.ravel()]
    items = pc.take(pa.concat_arrays(children), pa.array(positions))
    names = pa.array([f.name for f in fields], pa.string())
    keys = pc.take(names, pa.array(np.tile(np.arange(len(fields)), rows)[valid.ravel()]))
    offsets = pa.array(np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32))
    return pa.MapArray.from_arrays(offsets, keys, items, type=map_type)


def duplicate_free(table: pa.Table) -> np.ndarray | None:
    """Which rows to keep so a record delivered twice within one batch is stored once (the
    first wins); None when every record id is distinct."""
    ids = table["record_id"]
    if len(pc.unique(ids)) == table.num_rows:
        return None
    seen: set[str] = set()
    keep = np.zeros(table.num_rows, dtype=bool)
    for i, rid in enumerate(ids.to_pylist()):
        keep[i] = rid not in seen
        seen.add(rid)
    return keep


def with_pattern_ids(table: pa.Table, pattern_ids: pa.Array | pa.ChunkedArray) -> pa.Table:
    index = table.schema.get_field_index("pattern_id")
    return table.set_column(index, "pattern_id", pc.cast(pattern_ids, pa.uint64()))


# What ingest decides about a record, appended to its original JSON when forwarding it.
_DECIDED = ["level", "service", "record_id", "pattern_id", "pipeline"]
_DECIDED_KEYS = ["timestamp", *_DECIDED]

_JSON_COLUMNS = [name for name in LOG_SCHEMA.names if not name.startswith("kafka_") and name != "timestamp"]


def rows_to_json(table: pa.Table) -> list[bytes]:
    """Rows as canonical record JSON (what the vectorizer consumes), built column-wise."""
    if table.num_rows == 0:
        return []
    # Arrow formats a millisecond timestamp's %S with its fraction: 2026-11-25T10:00:05.123Z
    stamps = pc.strftime(table["timestamp"], format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
    columns = [table[name].to_pylist() for name in _JSON_COLUMNS]
    attributes_index = _JSON_COLUMNS.index("attributes")
    dumps = orjson.dumps
    out = []
    for stamp, values in zip(stamps, zip(*columns)):
        row = dict(zip(_JSON_COLUMNS, values))
        row["timestamp"] = stamp
        row["attributes"] = dict(values[attributes_index] or ())
        out.append(dumps(row))
    return out
