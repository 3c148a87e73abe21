"""The dead-letter record every stage writes: nothing is lost, and the reason travels with it."""

from __future__ import annotations

import base64
from datetime import datetime

import orjson

from logpipe.core.record import format_timestamp


def dead_letter(value: bytes | None, error: str, stage: str, failed_at: datetime, *, topic: str,
                partition: int, offset: int, timestamp_ms: int | None) -> bytes:
    """JSON with the original bytes (base64, and as text when it is UTF-8), the error, the stage,
    the time and where the message came from, so it can be inspected and re-produced."""
    value = value or b""
    try:
        text: str | None = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return orjson.dumps({
        "original_base64": base64.b64encode(value).decode(),
        "original_text": text,
        "error": error,
        "stage": stage,
        "time": format_timestamp(failed_at),
        "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp_ms": timestamp_ms},
    })
