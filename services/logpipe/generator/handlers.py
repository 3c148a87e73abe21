"""The generator's production loop and its REST control surface."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from logpipe.core import metrics
from logpipe.core.http import requires_token
from logpipe.core.kafka import send_values
from logpipe.generator.service import FAMILIES, Incident, LogFactory, default_incidents, encode
from logpipe.generator.settings import Settings

log = logging.getLogger(__name__)

PRODUCED = metrics.counter("logpipe_generator_logs_total", "Logs produced to raw-logs", ("level",))
RATE = metrics.gauge("logpipe_generator_rate_per_second", "Configured generation rate")


def parse_incidents(text: str) -> list[Incident]:
    if text.strip() in ("", "none"):
        return []
    if text.strip() == "default":
        return default_incidents()
    incidents = [Incident(**item) for item in orjson.loads(text)]
    for incident in incidents:
        if incident.family and incident.family not in FAMILIES:
            raise ValueError(f"unknown message family {incident.family!r}; known: {', '.join(FAMILIES)}")
    return incidents


@dataclass
class GeneratorStats:
    running: bool = False
    produced: int = 0
    errors: int = 0
    by_level: dict[str, int] = field(default_factory=dict)
    started_at: float | None = None
    last_error: str | None = None


class Generator:
    """Produces `rate_per_second` logs, in ticks of 50 ms, until stopped."""

    tick_s = 0.05

    def __init__(self, settings: Settings, producer, topic: str) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = topic
        self.rate = settings.rate_per_second
        self.factory = LogFactory(settings.services, settings.error_rate_percentage / 100, settings.seed,
                                  settings.environment, parse_incidents(settings.incidents))
        self.stats = GeneratorStats()
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        RATE.set(self.rate)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self.stats.running = True
        self.stats.started_at = time.time()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="generator")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop after the batch in flight is acknowledged, so `produced` counts what the topic holds.

        Cancelling mid-send would leave records the producer already queued uncounted but
        delivered; only a send that outlasts `grace_s` (a broker gone away) is cancelled.
        """
        self.stats.running = False
        if self._task:
            self._stopping.set()
            try:
                await asyncio.wait_for(self._task, grace_s)
            except (asyncio.CancelledError, asyncio.TimeoutError):
                pass
            self._task = None

    def control(self, rate_per_second: float | None, error_rate_percentage: float | None) -> None:
        if rate_per_second is not None:
            self.rate = rate_per_second
            RATE.set(rate_per_second)
        if error_rate_percentage is not None:
            self.factory.error_rate = error_rate_percentage / 100

    # A late tick makes up for the time that passed, up to this much of it: more would stall
    # the event loop it shares with the other services in `run all` for too long in one go.
    catch_up_s = 0.25
    # Records made between two yields to the event loop (about 30 ms of Python).
    chunk = 2_000

    async def _run(self) -> None:
        started = time.monotonic()
        owed = 0.0
        last = started
        next_tick = started
        while not self._stopping.is_set():
            now = time.monotonic()
            # Owed for the time that really passed, not for one tick: a tick that comes late (a
            # busy event loop, a slow acknowledgement) would otherwise lower the rate it makes.
            owed = min(owed + self.rate * (now - last), self.rate * self.catch_up_s)
            last = now
            count = int(owed)
            owed -= count
            elapsed = now - started
            moment = datetime.now(timezone.utc)
            # A family's normal rate: what a surge multiplies.
            self.factory._family_rate = max(0.05, self.rate * self.factory.error_rate / (len(self.factory.services) * 2))
            records = []
            for first in range(0, count, self.chunk):
                records += [self.factory.one(moment, elapsed_s=elapsed) for _ in range(min(self.chunk, count - first))]
                if count > self.chunk:
                    # A large catch-up tick must not hold the event loop the other services
                    # share in `run all` (their /health and /stats answers) for all of it.
                    await asyncio.sleep(0)
            records += self.factory.incident_records(elapsed, self.tick_s, moment)
            if records:
                try:
                    await send_values(self.producer, self.topic, list(map(encode, records)))
                    self.stats.produced += len(records)
                    # Counted per level once a tick: a labelled counter costs about a microsecond
                    # an increment, a tenth of what making the record costs.
                    for level, count in Counter([record["level"] for record in records]).items():
                        self.stats.by_level[level] = self.stats.by_level.get(level, 0) + count
                        PRODUCED.labels(level).inc(count)
                except Exception as exc:  # noqa: BLE001 - keep generating; the broker may come back
                    self.stats.errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("produce failed: %s", exc)
                    await self._pause(1.0)
            next_tick += self.tick_s
            delay = next_tick - time.monotonic()
            if delay > 0:
                await self._pause(delay)
            else:
                # Falling behind: tick again at once (the debt above is bounded by catch_up_s).
                next_tick = time.monotonic()
                await asyncio.sleep(0)


    async def _pause(self, seconds: float) -> None:
        """Sleep, waking early when stop() is called."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass


class Control(BaseModel):
    rate_per_second: float | None = Field(None, ge=1, le=100_000)
    error_rate_percentage: float | None = Field(None, ge=0, le=100)


router = APIRouter(tags=["generator"])


def _generator(request: Request) -> Generator:
    return request.app.state.generator


@router.post("/start", dependencies=[Depends(requires_token("admin"))])
async def start(request: Request) -> dict:
    generator = _generator(request)
    generator.start()
    return {"running": True, "rate_per_second": generator.rate}


@router.post("/stop", dependencies=[Depends(requires_token("admin"))])
async def stop(request: Request) -> dict:
    generator = _generator(request)
    await generator.stop()
    return {"running": False, "produced": generator.stats.produced}


@router.put("/control", dependencies=[Depends(requires_token("admin"))])
async def control(body: Control, request: Request) -> dict:
    if body.rate_per_second is None and body.error_rate_percentage is None:
        raise HTTPException(422, "give rate_per_second and/or error_rate_percentage")
    generator = _generator(request)
    generator.control(body.rate_per_second, body.error_rate_percentage)
    return {"rate_per_second": generator.rate, "error_rate_percentage": round(generator.factory.error_rate * 100, 4)}


@router.get("/stats")
async def stats(request: Request) -> dict:
    generator = _generator(request)
    s = generator.stats
    uptime = time.time() - s.started_at if s.started_at else 0.0
    return {
        "running": generator.running,
        "produced": s.produced,
        "by_level": s.by_level,
        "rate_per_second": generator.rate,
        "error_rate_percentage": round(generator.factory.error_rate * 100, 4),
        "actual_rate_per_second": round(s.produced / uptime, 1) if uptime else 0.0,
        "services": list(generator.factory.services),
        "incidents": [i.__dict__ for i in generator.factory.incidents],
        "produce_errors": s.errors,
        "last_error": s.last_error,
        "topic": generator.topic,
    }
