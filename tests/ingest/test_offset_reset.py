"""A partition that numbers its records from 0 again (a topic deleted and recreated, a broker
that lost its log) while ClickHouse holds higher offsets of the earlier one: the new records are
stored, not skipped as a replay."""

from __future__ import annotations

from logpipe.generator.service import LogFactory, encode
from support import produce_to_every_partition, running_ingest, wait_for


async def test_records_below_a_stale_watermark_are_stored(kafka_bootstrap, topics, topic_prefix, clickhouse):
    # What the earlier incarnation of the topic left: offsets up to 5,000 stored on every partition.
    clickhouse.insert_rows("ingest_offsets", [[topics.raw_logs, p, 5_000] for p in range(4)],
                           ["topic", "partition", "max_offset"])
    records = LogFactory(seed=31).batch(200)
    await produce_to_every_partition(kafka_bootstrap, topics.raw_logs, [encode(r) for r in records], 4)
    async with running_ingest(kafka_bootstrap, topic_prefix, clickhouse) as app:
        ingestor = app.state.ingestor
        await wait_for(lambda: ingestor.consumer.stats.consumed == 200 and ingestor.stats.written == 200,
                       timeout=60, message=lambda: ingestor.stats_view())
        assert ingestor.stats.replay_skipped == 0
        assert ingestor.stats.offset_resets >= 1
    rows = clickhouse.query(f"SELECT count(), uniqExact(record_id) FROM {clickhouse.table('logs')}")[0]
    assert rows == (200, 200)
    stored = {r[0] for r in clickhouse.query(f"SELECT record_id FROM {clickhouse.table('logs')}")}
    assert stored == {r["record_id"] for r in records}
