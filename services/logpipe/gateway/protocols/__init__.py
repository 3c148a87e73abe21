"""Decoders for what shippers send over HTTP: OTLP/HTTP, Loki push, JSON lines.

Each decoder is pure: bytes and headers in, canonical record dicts (what
`core.shippers.normalize_object` makes of each log, in its wire form, `core.record.wire_record`)
out, or `ProtocolError` with the reason and an HTTP status.
"""

from logpipe.gateway.protocols.common import ProtocolError, decompress, finish_records

__all__ = ["ProtocolError", "decompress", "finish_records"]
