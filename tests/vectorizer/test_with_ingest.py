"""The contract with ingest: what ingest forwards is what the vectorizer stores."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson

from support import produce, running_ingest, wait_for
from vectorizer_support import running_vectorizer


async def test_ingest_forwarded_errors_become_points(kafka_bootstrap, topics, clickhouse, tmp_path, embedding_backend):
    # Recent times: `logs` drops rows past its TTL (90 days).
    minute = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    raw = [orjson.dumps({"timestamp": f"{minute}:{i:02d}.250Z", "service": "billing",
                         "level": ["info", "warning", "error", "fatal"][i % 4],
                         "message": f"Invoice {i} failed: ledger database connection timeout", "trace_id": f"{i:032x}"})
           for i in range(12)]
    async with running_ingest(kafka_bootstrap, topics.prefix, clickhouse):
        async with running_vectorizer(kafka_bootstrap, topics, tmp_path) as (app, http, _):
            await produce(kafka_bootstrap, topics.raw_logs, raw)
            store = app.state.vector_store
            # INFO stays out of the vector store; WARN, ERROR and FATAL come in (9 of 12).
            await wait_for(lambda: store.count() == 9, timeout=90)
            rows = clickhouse.query_dicts(
                f"SELECT record_id, pattern_id FROM {clickhouse.database}.logs WHERE level != 'INFO'")
            points = {p["payload"]["record_id"]: p["payload"] for p in store.retrieve([r["record_id"] for r in rows])}
            assert len(points) == 9
            for row in rows:
                payload = points[row["record_id"]]
                assert payload["pattern_id"] == row["pattern_id"] and payload["service"] == "billing"
                assert payload["level"] in ("WARN", "ERROR", "FATAL")
                assert payload["timestamp"].startswith(f"{minute}:")
