"""Novel errors read back from the vectorizer's topic on a real broker (Tansu)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson

from logpipe.ai.llm import NoLLM
from logpipe.analyzer.runner import Analyzer
from logpipe.analyzer.settings import Settings
from logpipe.core.broker import free_port
from logpipe.core.kafka import new_producer, send_values
from logpipe.core.record import format_timestamp


def novel_event(world, hours_after: float, pattern, number: int) -> bytes:
    moment = world.incident_day + timedelta(hours=hours_after)
    return orjson.dumps({
        "type": "novel_error", "record_id": f"r-{number}", "timestamp": format_timestamp(moment),
        "service": pattern.service, "level": pattern.level, "message": pattern.template.replace("{n}", str(number)),
        "trace_id": f"t{number}", "pattern_id": pattern.pattern_id, "similarity": 0.41, "threshold": 0.8,
        "nearest": None, "detected_at": format_timestamp(moment + timedelta(seconds=2)),
    })


async def test_novel_errors_of_the_window_are_in_the_report(world, kafka_bootstrap, topics, tmp_path, sqlite_engine):
    events = [novel_event(world, 14.5, world.timeout_payments, i) for i in range(3)]
    events += [novel_event(world, 16.2, world.migration_orders, 10)]
    events += [novel_event(world, -30, world.refused_checkout, 20)]  # the day before: outside the window
    events += [b"not json"]
    producer = new_producer(kafka_bootstrap)
    await producer.start()
    try:
        await send_values(producer, topics.novel_errors, events)
    finally:
        await producer.stop()
    settings = Settings(LOGPIPE_DATA_DIR=str(tmp_path), llm_backend="none", ANALYSIS_SCHEDULE_CRON="",
                        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, TOPIC_PREFIX=topics.prefix)
    analyzer = Analyzer(settings, world.store, sqlite_engine, None, NoLLM())
    row = await asyncio.to_thread(analyzer.run, 24, None, world.day_end(7))
    novel = row.report["novel_errors"]
    assert novel["error"] == "" and novel["count"] == 4
    groups = {g["pattern_id"]: g for g in novel["patterns"]}
    assert set(groups) == {str(world.timeout_payments.pattern_id), str(world.migration_orders.pattern_id)}
    assert groups[str(world.timeout_payments.pattern_id)]["count"] == 3
    assert groups[str(world.timeout_payments.pattern_id)]["services"] == ["payments"]
    assert "4 errors unlike any earlier error" in row.summary
    assert any(r["action"].startswith("Read the errors unlike any before") for r in row.report["recommendations"])
    assert "## Novel errors" in row.markdown and "3 in `" in row.markdown

    only_orders = await asyncio.to_thread(analyzer.run, 24, ["orders"], world.day_end(7))
    assert only_orders.report["novel_errors"]["count"] == 1


async def test_an_unreachable_broker_leaves_the_report_without_novel_errors(world, tmp_path, sqlite_engine):
    settings = Settings(LOGPIPE_DATA_DIR=str(tmp_path), llm_backend="none", ANALYSIS_SCHEDULE_CRON="",
                        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", novel_errors_timeout_s=5)
    analyzer = Analyzer(settings, world.store, sqlite_engine, None, NoLLM())
    row = await asyncio.to_thread(analyzer.run, 24, None, world.day_end(7))
    assert row.status == "completed" and row.report["anomalies"]
    assert "Unable to bootstrap" in row.report["novel_errors"]["error"]
    assert "Not read:" in row.markdown
