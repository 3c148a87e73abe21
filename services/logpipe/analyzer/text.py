"""Text helpers shared by anomaly descriptions, the report and its Markdown export."""

from __future__ import annotations


def shorten(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def plural(count: float, noun: str, many: str | None = None) -> str:
    """`1 hour`, `3 hours`, `1,204 logs`: a count with its noun agreeing."""
    number = f"{count:,.0f}" if float(count).is_integer() else f"{count:,.1f}"
    return f"{number} {noun if count == 1 else (many or noun + 's')}"
