"""Time windows of a run: hour buckets, UTC, and the timestamps the report shows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

HOUR = timedelta(hours=1)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def hour_floor(value: datetime) -> datetime:
    return utc(value).replace(minute=0, second=0, microsecond=0)


def window_buckets(start: datetime, end: datetime) -> list[tuple[datetime, bool]]:
    """Every hour bucket touching [start, end), with whether it lies wholly inside."""
    start, end = utc(start), utc(end)
    buckets = []
    bucket = hour_floor(start)
    while bucket < end:
        buckets.append((bucket, bucket >= start and bucket + HOUR <= end))
        bucket += HOUR
    return buckets


def iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    value = utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return utc(value) if value else None
    return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def format_time(value: Any) -> str:
    moment = parse_time(value)
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "?"


def format_span(start: datetime | str, end: datetime | str) -> str:
    """`on 2026-05-04 from 05:00 to 08:00 UTC`, or with both dates when it crosses midnight."""
    start, end = parse_time(start), parse_time(end)
    if end.date() == start.date() or (end - start <= timedelta(days=1) and end == end.replace(
            hour=0, minute=0, second=0, microsecond=0) and (end - timedelta(microseconds=1)).date() == start.date()):
        until = "24:00" if end.date() != start.date() else f"{end:%H:%M}"
        return f"on {start:%Y-%m-%d} from {start:%H:%M} to {until} UTC"
    return f"from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
