"""The analyzer service: REST API over analysis runs, plus a cron schedule of its own."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Sequence

from croniter import croniter
from fastapi import FastAPI, HTTPException
from sqlalchemy import exc as sa_exc
from sqlmodel import select

from logpipe.ai.llm import LLM
from logpipe.analyzer.handlers import router
from logpipe.analyzer.runner import Analyzer, Embed, embed_from
from logpipe.analyzer.settings import Settings
from logpipe.core.circuit import CircuitBreaker
from logpipe.core.health import Health
from logpipe.core.http import create_service_app
from logpipe.stores import sql
from logpipe.stores.clickhouse import ClickHouseStore
from logpipe.stores.sql import NightlyReport
from logpipe.tokens import ServiceGuard

log = logging.getLogger(__name__)


def recover_interrupted(engine, pipeline: str) -> int:
    """Runs left pending or running by a process that died can never finish: say so."""
    with sql.session(engine) as db:
        rows = db.exec(select(NightlyReport).where(NightlyReport.pipeline == pipeline,
                                                   NightlyReport.status.in_(("pending", "running")))).all()
        for row in rows:
            row.status, row.finished_at = "failed", sql.utcnow()
            row.error = "interrupted: the analyzer stopped before the run finished"
            db.add(row)
        db.commit()
    return len(rows)


def create_app(settings: Settings | None = None, *, store: ClickHouseStore | None = None, engine=None,
               embed: Embed | None = None, llm: LLM | None = None) -> FastAPI:
    settings = settings or Settings()
    health = Health("analyzer")
    tasks: set[asyncio.Task] = set()

    async def lifespan(app: FastAPI):
        clickhouse = store or ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        if store is None:
            await asyncio.to_thread(clickhouse.apply_schema, settings.log_ttl_days,
                                    settings.clickhouse_time_projection)
        sql_engine = engine or sql.engine(settings)
        await asyncio.to_thread(sql.init_db, sql_engine)
        interrupted = await asyncio.to_thread(recover_interrupted, sql_engine, settings.pipeline)
        if interrupted:
            log.warning("marked %d interrupted runs as failed", interrupted)
        analyzer = Analyzer(settings, clickhouse, sql_engine, embed or embed_from(settings), llm)
        app.state.analyzer = analyzer
        health.add("clickhouse", clickhouse.aping)
        # The SQL database (PostgreSQL in production) holds the runs: while it is away a run
        # cannot even be recorded, so starting one answers 503 with Retry-After (the schedule
        # keeps trying) and its circuit shows on /health and /metrics. A probe that answers is
        # a successful trial: it closes the circuit.
        sql_circuit = health.circuit("sql", settings.breaker_threshold, settings.retry_base_seconds,
                                     settings.retry_max_seconds)

        async def sql_ok() -> bool:
            ok = await asyncio.to_thread(sql.ping, sql_engine)
            if ok:
                sql_circuit.record_success()
            return ok

        health.add("sql", sql_ok)

        async def start_run(window_hours: float | None, services: Sequence[str] | None,
                            end: datetime | None, trigger: str) -> NightlyReport:
            try:
                row = await asyncio.to_thread(analyzer.create_run, window_hours, services, end, trigger)
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                sql_circuit.record_failure(exc)
                log.error("cannot record the analysis run: the SQL database is unavailable",
                          extra={"circuit": sql_circuit.state, "error": sql_circuit.last_error})
                raise HTTPException(503, "the SQL database is unavailable; retry later",
                                    headers={"Retry-After": str(max(1, math.ceil(sql_circuit.delay())))}) from exc
            sql_circuit.record_success()
            task = asyncio.create_task(asyncio.to_thread(analyzer.execute, row.id), name=f"analysis-{row.id}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return row

        app.state.start_run = start_run
        scheduler = None
        if settings.schedule_cron:
            scheduler = asyncio.create_task(_schedule(settings, start_run, sql_circuit), name="analysis-schedule")
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.cancel()
            if tasks:
                # A run is a thread and cannot be cancelled; give it a moment to finish and
                # let the next start mark it interrupted otherwise.
                await asyncio.wait(list(tasks), timeout=30)
            if store is None:  # ours: the caller's store is the caller's to close
                await asyncio.to_thread(clickhouse.close)

    app = create_service_app("analyzer", health, lifespan, guard=ServiceGuard(settings))
    app.include_router(router)
    return app


async def _schedule(settings: Settings, start_run, circuit: CircuitBreaker) -> None:
    """Start a run at every cron time (UTC), for the window that ends at that time. A start that
    fails because the database is away is retried (the circuit's back-off) until the next
    cron time: the window is analysed late rather than never."""
    schedule = croniter(settings.schedule_cron, datetime.now(timezone.utc))
    due: datetime = schedule.get_next(datetime)
    while True:
        await asyncio.sleep(max(0.0, (due - datetime.now(timezone.utc)).total_seconds()))
        following: datetime = schedule.get_next(datetime)
        while True:
            try:
                row = await start_run(settings.window_hours, None, due, "schedule")
                log.info("scheduled analysis started", extra={"report_id": row.id, "window_end": due.isoformat()})
                break
            except HTTPException as exc:
                if exc.status_code != 503 or datetime.now(timezone.utc) + timedelta(
                        seconds=circuit.delay()) >= following:
                    log.error("scheduled analysis for %s not started: %s", due.isoformat(), exc.detail)
                    break
                await asyncio.sleep(circuit.delay())
            except Exception:  # noqa: BLE001 - one failed start must not stop the schedule
                log.exception("could not start the scheduled analysis")
                break
        due = following


def next_runs(expression: str, count: int = 3, now: datetime | None = None) -> list[datetime]:
    schedule = croniter(expression, now or datetime.now(timezone.utc))
    return [schedule.get_next(datetime) for _ in range(count)]

