"""JSON lines (POST /api/ingest): one log per line, in any format `core.shippers` reads.

A line is a JSON object (our records, pino, zap, ECS, Fluent Bit, Vector, ...) or plain
text. A body that is one JSON array of objects is accepted too. A bad line rejects the
whole request with its line number, so a client never has to guess which lines landed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from logpipe.core.shippers import DEFAULT_LIMITS, RecordLimits, text_record
from logpipe.gateway.protocols.common import ProtocolError, check_count, finish_record, validate_record


def decode(body: bytes, fallback_time: datetime, *, max_records: int, max_record_bytes: int,
           limits: RecordLimits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"body is not UTF-8 (byte {exc.start})") from exc
    if "\x00" in text:
        raise ProtocolError("body contains NUL bytes")
    stripped = text.strip()
    if not stripped:
        raise ProtocolError("empty body: send one JSON object or text line per line")
    if stripped.startswith("["):
        try:
            items = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"malformed JSON array: {exc}") from exc
        check_count(len(items), max_records)
        return [finish_record(item, fallback_time, index, max_record_bytes, f"item {index + 1}", limits)
                for index, item in enumerate(items)]

    lines = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    check_count(len(lines), max_records)
    records = []
    for index, (number, line) in enumerate(lines):
        label = f"line {number}"
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ProtocolError(f"{label}: malformed JSON: {exc}") from exc
            records.append(finish_record(obj, fallback_time, index, max_record_bytes, label, limits))
        else:
            if line.startswith(("[", '"')):
                raise ProtocolError(f"{label}: a line is a JSON object or plain text, not a JSON "
                                    f"{'array' if line.startswith('[') else 'string'}")
            record = text_record(line, fallback_time, "")
            records.append(validate_record(record, index, max_record_bytes, label))
    return records
