"""What every ingest protocol shares: limits, decompression, record ids, and the one
normaliser (`core.shippers.normalize_object`) every protocol ends in."""

from __future__ import annotations

import hashlib
import uuid
import zlib
from datetime import datetime
from typing import Any, Iterable

import orjson
from logpipe.core.record import RECORD_ID_NAMESPACE, wire_record
from logpipe.core.shippers import DEFAULT_LIMITS, NotALogError, RecordLimits, normalize_object

# Ids of records that arrived over HTTP without one: derived from the content, so a
# client that retries a request (timeout, 503) sends the same ids and storage folds them.
HTTP_RECORD_ID_NAMESPACE = uuid.uuid5(RECORD_ID_NAMESPACE, "http")
_PENDING_ID = str(HTTP_RECORD_ID_NAMESPACE)


class ProtocolError(ValueError):
    """Input the gateway refuses; `status` is the HTTP status (400, 413, 415)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding, refusing anything that inflates past `max_bytes`."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            if encoding == "deflate":
                # Some clients send raw deflate without the zlib header.
                try:
                    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    out = inflater.decompress(body, max_bytes + 1)
                except zlib.error:
                    raise ProtocolError(f"body is not valid {encoding}: {exc}") from exc
            else:
                raise ProtocolError(f"body is not valid {encoding}: {exc}") from exc
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise ProtocolError(f"decompressed body is over the {max_bytes}-byte limit", 413)
        return out
    if encoding == "snappy":
        return snappy_decompress(body, max_bytes)
    raise ProtocolError(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or identity", 415)


def snappy_length(body: bytes) -> int:
    """The uncompressed length a snappy block declares (a little-endian base-128 varint)."""
    length = shift = 0
    for index, byte in enumerate(body[:5]):
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length
        shift += 7
    raise ProtocolError("body is not valid snappy: bad length header")


def snappy_decompress(body: bytes, max_bytes: int) -> bytes:
    """Snappy block format (what Loki and Prometheus remote-write clients send)."""
    import snappy

    # Checked before inflating, so a small body cannot claim gigabytes of memory.
    if snappy_length(body) > max_bytes:
        raise ProtocolError(f"decompressed body is over the {max_bytes}-byte limit", 413)
    try:
        return snappy.decompress(body)
    except Exception as exc:  # noqa: BLE001 - python-snappy raises several unrelated types
        raise ProtocolError(f"body is not valid snappy (block format): {exc}") from exc


def content_record_id(record: dict[str, Any], index: int) -> str:
    """A UUID from the canonical record's content and its position in the request."""
    digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"/%d" % index).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def check_count(count: int, max_records: int) -> None:
    if count > max_records:
        raise ProtocolError(f"{count} records in one request, over the limit of {max_records}; "
                            "split the batch", 413)


def finish_records(objects: Iterable[dict[str, Any]], fallback_time: datetime, *, max_records: int,
                   max_record_bytes: int, where: str = "record",
                   limits: RecordLimits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    """Flat shipper objects to validated canonical records, each with a record_id."""
    out: list[dict[str, Any]] = []
    for index, obj in enumerate(objects):
        if index >= max_records:
            check_count(index + 1, max_records)
        out.append(finish_record(obj, fallback_time, index, max_record_bytes, f"{where} {index + 1}", limits))
    return out


def finish_record(obj: dict[str, Any], fallback_time: datetime, index: int, max_record_bytes: int,
                  label: str, limits: RecordLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{label}: a log record must be a JSON object, not {type(obj).__name__}")
    try:
        normalized = normalize_object(obj, fallback_time, "", limits)
    except NotALogError as exc:
        raise ProtocolError(f"{label}: {exc}") from exc
    return validate_record(normalized, index, max_record_bytes, label)


def validate_record(normalized: dict[str, Any], index: int, max_record_bytes: int, label: str) -> dict[str, Any]:
    """A normalised record (core.shippers already checked every field) in its wire form, with
    a record id and within the size limit."""
    record = wire_record(normalized)
    if not record.get("record_id"):
        record["record_id"] = _PENDING_ID
        record["record_id"] = content_record_id(record, index)
    size = len(orjson.dumps(record))
    if size > max_record_bytes:
        raise ProtocolError(f"{label} is {size} bytes, over the {max_record_bytes}-byte record limit", 413)
    return record


def gunzip_if_needed(body: bytes, max_bytes: int) -> bytes:
    """Some shippers gzip without saying so in Content-Encoding; the magic number tells."""
    if body[:2] == b"\x1f\x8b":
        return decompress(body, "gzip", max_bytes)
    return body


__all__ = ["ProtocolError", "decompress", "finish_records", "finish_record", "validate_record",
           "check_count", "content_record_id", "gunzip_if_needed", "snappy_decompress"]
