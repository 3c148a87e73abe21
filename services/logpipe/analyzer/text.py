"""Text helpers shared by anomaly descriptions, the report and its Markdown export."""

from __future__ import annotations


def shorten(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
