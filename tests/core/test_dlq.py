"""The dead letter: the original travels with the reason, and the letter always fits a produce request."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

import orjson

from logpipe.core.dlq import ORIGINAL_MAX_BYTES, TEXT_COPY_MAX_BYTES, dead_letter


def letter(value: bytes) -> dict:
    return orjson.loads(dead_letter(value, "why", "decode", datetime(2026, 12, 7, tzinfo=timezone.utc),
                                    topic="raw-logs", partition=1, offset=9, timestamp_ms=None))


def test_a_small_letter_carries_the_original_as_base64_and_text():
    got = letter(b'{"message": "x"')
    assert base64.b64decode(got["original_base64"]) == b'{"message": "x"'
    assert got["original_text"] == '{"message": "x"' and "original_truncated" not in got
    assert got["error"] == "why" and got["source"] == {"topic": "raw-logs", "partition": 1, "offset": 9,
                                                       "timestamp_ms": None}


def test_a_big_original_is_base64_only_and_a_huge_one_is_cut_with_its_size_and_digest():
    medium = b"m" * (TEXT_COPY_MAX_BYTES + 1)
    got = letter(medium)
    assert got["original_text"] is None and base64.b64decode(got["original_base64"]) == medium

    huge = b"h" * (ORIGINAL_MAX_BYTES + 10)
    encoded = dead_letter(huge, "too big", "decode", datetime.now(timezone.utc), topic="raw-logs", partition=0,
                          offset=1, timestamp_ms=None)
    # Under the producer's 8 MiB request size (core/kafka.py), so publishing it cannot fail forever.
    assert len(encoded) < 8 << 20
    got = orjson.loads(encoded)
    assert got["original_truncated"] is True and got["original_bytes"] == len(huge)
    assert got["original_sha256"] == hashlib.sha256(huge).hexdigest()
    assert base64.b64decode(got["original_base64"]) == huge[:ORIGINAL_MAX_BYTES]
