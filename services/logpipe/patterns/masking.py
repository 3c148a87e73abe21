"""Masking: replace the obviously variable parts of log messages with `<*>`, on whole Arrow columns.

Masking runs once per distinct message, so it is the hot path of tagging. A Python regex costs
a few microseconds per message; these rules run as a handful of regex passes over a whole string
column, outside the GIL, so big batches are masked in slices on several cores. Everything a rule
cannot see (a user name, a host name without digits, a state word) is left to the miner, which
turns a token into `<*>` only once it has seen it vary.

The rules are written in RE2 syntax (the reference: `pyarrow.compute.replace_substring_regex`
gives the same result) and run on Polars' `str.replace_all` (Rust's regex crate), which took
about half the CPU of Arrow's RE2 on generated and on Loghub messages. `rust_pattern` turns each
rule into the same expression for Rust: RE2's `\\d`, `\\s` and `\\b` are ASCII, Rust's are Unicode,
so they are spelled out as ASCII classes; tests compare both engines on a corpus with Unicode
digits, spaces and letters.

The rules are one configuration for every log source (no per-source expressions); RULES below
lists them with examples, docs/patterns.md explains them.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

WILDCARD = "<*>"

# Characters that end a value inside a token (see the module docstring).
_DELIMITERS = r"\s:=,;()\[\]{}\"'|/@#&?"
_PIECE = f"[^{_DELIMITERS}]"
_PIECE_NOT_DOT = f"[^{_DELIMITERS}.]"
_NOT_ALNUM = f"[^{_DELIMITERS}A-Za-z0-9]"

_HEX2 = "[0-9a-fA-F]{2}"
_HEX4 = "[0-9a-fA-F]{1,4}"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
# Top-level domains that end a host name: generic ones, private-network suffixes and a few large
# country codes. Never one that is also a common word or file suffix (`id`, `in`, `is`, `sh`, `py`).
_TLD = ("com|net|org|edu|gov|mil|arpa|io|info|biz|cloud|local|localdomain|internal|intranet|lan|corp"
        "|co|uk|de|fr|jp|cn|hk|tw|kr|ru|br|au|ca|nl|eu|us|ch")

# (pattern, replacement), applied in this order; RE2 syntax (no look-around, so a piece's
# leading delimiter is captured and written back).
RULES: tuple[tuple[str, str], ...] = (
    # Whitespace runs carry no meaning in a template (single spaces are left alone: rewriting
    # every one of them costs more than all the other rules together).
    (r"[\t\n\r\f\v]\s*| \s+", " "),
    # URL: keep the scheme, mask the rest when it holds a digit (a constant URL stays).
    (r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^\s\]\)'\"]*\d[^\s\]\)'\"]*", r"\1<*>"),
    # One value each, whatever punctuation is inside: a calendar date written out (`Fri Jun 17`,
    # `Jun 17`; the clock time after it is masked below), a byte size with its unit (`5.2 KB`),
    # a MAC address, an IPv6 address (full, or compressed with `::`).
    (f"\\b(?:(?:{_WEEKDAY},? +)?{_MONTH} +\\d{{1,2}}|\\d+(?:\\.\\d+)?\\s?(?:[KMGTPE]i?)?B"
     f"|{_HEX2}(?::{_HEX2}){{5}}|(?:{_HEX4}:){{7}}{_HEX4})\\b"
     f"|(?:\\b{_HEX4}(?::{_HEX4})*::{_HEX4}|::\\d[0-9a-fA-F]{{0,3}})(?::{_HEX4})*(?:\\.\\d+){{0,3}}\\b", WILDCARD),
    # A path at the start of a token (Unix, or Windows `C:\\...`), up to a ':' (so
    # `/10.0.0.1:50010` is `<*>:<*>`, host and port) or closing punctuation; the character
    # before it is captured and written back (RE2 has no look-behind).
    (r"(^|[\s'\"=(\[,])(?:/|[A-Za-z]:\\)[^\s'\",;:)\]]+", r"\1<*>"),
    # A host name is a value like an IP is. A fully qualified name (labels ending in a common
    # top-level domain: a short, general list, so `org.apache.hadoop.io.Text` or
    # `mapreduce.task.id` stay) with its `user@` if it is an e-mail address, and a dotless host
    # with a port (`web-a:8080`, `localhost:80`).
    # A host inside a URL is the URL's (a constant URL stays). The character after the name is
    # captured and written back (RE2 has no look-ahead).
    (f"(^|[\\s'\"=(\\[,@])(?:(?:[A-Za-z0-9._%+-]+@)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\\.)+(?:{_TLD}|{_TLD.upper()})"
     f"|(?:localhost|[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+)(:\\d{{1,5}}))(\\.?(?:[^A-Za-z0-9._-]|$))", r"\1<*>\2\3"),
    # Any other piece of a token (it starts after a delimiter) that is a value:
    # - it starts with a digit (`42`, `10000ms`, `0x1f`, `-17`), or has a digit right after
    #   punctuation (`blk_-42`, `rdd_2_0`, `msra-sa-41`, `v1.0.0`), digits and letters mixed
    #   (`req_a1b2c3`), or a run of four digits (`user1234`, `n219076184117.example.net`);
    #   one short digit run glued to letters is part of a name (`ssh2`, `jk2_init`, `log4j`, `e820`);
    # - it is a long hex string (hashes, addresses: `ffff3000`, `deadbeefcafe`).
    # A trailing '.' ends a sentence, not a value.
    (f"(^|[{_DELIMITERS}])(?:[-+]?\\d|{_PIECE}*(?:{_NOT_ALNUM}\\d|\\d[A-Za-z]+\\d|\\d{{4}})|[0-9a-fA-F]{{8}})"
     f"(?:{_PIECE}*{_PIECE_NOT_DOT})?", r"\1<*>"),
)


def rust_pattern(pattern: str) -> str:
    """An RE2 rule as the same expression for Rust's regex crate (ASCII `\\d`, `\\s`, `\\b`)."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1]
            if escaped == "d":
                out.append("0-9" if in_class else "[0-9]")
            elif escaped == "s":  # RE2's \s is [\t\n\f\r ] (no \v)
                out.append("\\t\\n\\f\\r " if in_class else "[\\t\\n\\f\\r ]")
            elif escaped == "b" and not in_class:
                out.append("(?-u:\\b)")
            elif escaped in "wWDSB":
                raise ValueError(f"no ASCII spelling for \\{escaped} in {pattern!r}")
            else:
                out.append(char + escaped)
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):  # a leading ']' is a literal one
                out.append("\\]")
                i += 1
        elif char == "]" and in_class:
            in_class = False
            out.append(char)
        else:
            out.append(char)
        i += 1
    return "".join(out)


def rust_replacement(replacement: str) -> str:
    return re.sub(r"\\(\d)", r"${\1}", replacement.replace("$", "$$"))


_RUST_RULES = tuple((rust_pattern(pattern), rust_replacement(replacement)) for pattern, replacement in RULES)

# Below this many messages a batch is masked in the calling thread; above, in slices on a
# few threads (Polars releases the GIL, so the slices run on separate cores).
_PARALLEL_MIN = 16_384
_pool = None


def mask_array(messages: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Mask every message of a string column; nulls stay null."""
    if pa.types.is_large_string(messages.type) or pa.types.is_string(messages.type):
        masked = messages
    else:
        masked = pc.cast(messages, pa.string())
    workers = min(os.cpu_count() or 1, 4)
    if workers > 1 and len(masked) >= _PARALLEL_MIN:
        step = -(-len(masked) // workers)
        slices = [masked.slice(offset, step) for offset in range(0, len(masked), step)]
        parts = list(_executor(workers).map(_apply_rules, slices))
        if isinstance(masked, pa.ChunkedArray):
            return pa.chunked_array([chunk for part in parts for chunk in part.chunks], type=pa.string())
        return pa.concat_arrays(parts)
    return _apply_rules(masked)


def _apply_rules(masked: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    series = pl.Series(pc.utf8_trim_whitespace(masked))
    for pattern, replacement in _RUST_RULES:
        series = series.str.replace_all(pattern, replacement)
    out = series.to_arrow().cast(pa.string())
    if isinstance(masked, pa.ChunkedArray):
        return out if isinstance(out, pa.ChunkedArray) else pa.chunked_array([out], type=pa.string())
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def mask_array_re2(messages: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The rules on Arrow's RE2: the reference the Polars path is tested against."""
    masked = pc.utf8_trim_whitespace(messages)
    for pattern, replacement in RULES:
        masked = pc.replace_substring_regex(masked, pattern=pattern, replacement=replacement)
    return masked


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="patterns-mask")
    return _pool


def mask_many(messages: Sequence[str] | Iterable[str]) -> list[str]:
    """Mask plain strings (tools and tests); the same rules as `mask_array`."""
    return mask_array(pa.array(list(messages), type=pa.string())).to_pylist()


def mask(message: str) -> str:
    return mask_many([message])[0]
