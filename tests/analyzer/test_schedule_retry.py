"""A scheduled analysis whose start finds the SQL database away is retried with the circuit's
back-off until it starts (for the same window), not dropped."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from fastapi import HTTPException

from logpipe.analyzer.app import _schedule
from logpipe.core.circuit import CircuitBreaker
from support import wait_for


async def test_a_scheduled_start_is_retried_while_the_database_is_away():
    circuit = CircuitBreaker("sql", "analyzer-test", threshold=2, base_delay_s=0.05, max_delay_s=0.1)
    calls = []

    async def start_run(window_hours, services, end, trigger):
        calls.append(end)
        if len(calls) <= 3:
            circuit.record_failure("OperationalError: connection refused")
            raise HTTPException(503, "the SQL database is unavailable; retry later")
        circuit.record_success()
        return SimpleNamespace(id="r1")

    # Every second: a retry must still start the run for the window that was due.
    schedule = asyncio.create_task(_schedule(SimpleNamespace(schedule_cron="* * * * * *", window_hours=1.0),
                                             start_run, circuit))
    try:
        await wait_for(lambda: len(calls) >= 4, timeout=10)
    finally:
        schedule.cancel()
    assert calls[0] == calls[1] == calls[2] == calls[3]
    assert circuit.state == "closed" and circuit.retries_total == 3
