"""Decoders for what shippers send over HTTP: OTLP/HTTP, Loki push, JSON lines.

Each decoder is pure: bytes and headers in, canonical record dicts
(`LogRecord.to_json_dict()`) out, or `ProtocolError` with the reason and an HTTP status.
"""

from logpipe.gateway.protocols.common import ProtocolError, decompress, finish_records

__all__ = ["ProtocolError", "decompress", "finish_records"]
