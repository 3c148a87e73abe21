"""The dead-letter record every stage writes: nothing is lost, and the reason travels with it."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import orjson

from logpipe.core.record import format_timestamp


# The text copy is for reading a letter by eye; past this size the base64 alone carries the
# original, so a letter stays under the producer's request size (core/kafka.py, 8 MiB).
TEXT_COPY_MAX_BYTES = 64 * 1024
# A letter must fit the producer's request, or publishing it would be retried forever and stall
# the partition. A bigger original is cut here; its size and SHA-256 say what it was, and the
# whole message stays on the source topic at `source` until that topic's retention.
ORIGINAL_MAX_BYTES = 4 * 1024 * 1024


def dead_letter(value: bytes | None, error: str, stage: str, failed_at: datetime, *, topic: str,
                partition: int, offset: int, timestamp_ms: int | None) -> bytes:
    """JSON with the original bytes (base64, and as text when it is small UTF-8), the error, the
    stage, the time and where the message came from, so it can be inspected and re-produced."""
    value = value or b""
    text: str | None = None
    if len(value) <= TEXT_COPY_MAX_BYTES:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    letter = {
        "original_base64": base64.b64encode(value[:ORIGINAL_MAX_BYTES]).decode(),
        "original_text": text,
        "error": error,
        "stage": stage,
        "time": format_timestamp(failed_at),
        "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp_ms": timestamp_ms},
    }
    if len(value) > ORIGINAL_MAX_BYTES:
        letter.update(original_truncated=True, original_bytes=len(value),
                      original_sha256=hashlib.sha256(value).hexdigest())
    return orjson.dumps(letter)
