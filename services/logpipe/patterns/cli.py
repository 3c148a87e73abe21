"""`logpipe patterns mine`: mine stdin in memory and print `<pattern_id>\\t<template>` per line."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    patterns = subparsers.add_parser("patterns", help="log pattern tools")
    sub = patterns.add_subparsers(dest="patterns_command", required=True)
    mine = sub.add_parser(
        "mine", help="read one message per line on stdin; print '<pattern_id>\\t<template>' per line",
        description="Mines the messages in memory (no ClickHouse). Templates are printed as they "
                    "stand after all input was read. Settings come from PATTERNS_* variables.")
    mine.set_defaults(func=cmd_mine)


def cmd_mine(args: argparse.Namespace) -> None:
    from logpipe.patterns import build_miner, mine

    stdin = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    lines = stdin.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another one
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    out = sys.stdout
    for pattern_id, template in mine(lines, build_miner()):
        # A template never holds a newline or tab of its own (masking folds whitespace).
        out.write(f"{pattern_id}\t{template}\n")
    out.flush()
