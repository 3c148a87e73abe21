-- Every log, with its pattern. Applied idempotently at start by logpipe.stores.clickhouse.apply_schema.
-- ReplacingMergeTree on (.., record_id) folds a record delivered twice; ingest also skips
-- Kafka offsets it already stored (ingest_offsets below), so a replay never doubles a row.
-- The sort key starts with the hour: the newest logs of every service and level then sit in
-- the last hour's few granules, not at the tail of every (service, level) run of the day,
-- and within an hour rows stay ordered for service/level/time queries (docs/api.md).
-- The pattern set index covers single granules: with services interleaved per hour, a
-- coarser one would hold most patterns of the hour and skip little.
CREATE TABLE IF NOT EXISTS {database}.logs
(
    timestamp     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    service       LowCardinality(String),
    level         LowCardinality(String),
    message       String CODEC(ZSTD(1)),
    logger        LowCardinality(String),
    host          LowCardinality(String),
    pod           LowCardinality(String),
    namespace     LowCardinality(String),
    environment   LowCardinality(String),
    version       LowCardinality(String),
    trace_id      String CODEC(ZSTD(1)),
    span_id       String CODEC(ZSTD(1)),
    user_id       String CODEC(ZSTD(1)),
    session_id    String CODEC(ZSTD(1)),
    request_id    String CODEC(ZSTD(1)),
    http_method   LowCardinality(String),
    http_path     String CODEC(ZSTD(1)),
    http_status   Nullable(UInt16),
    duration_ms   Nullable(Float64),
    client_ip     String CODEC(ZSTD(1)),
    user_agent    LowCardinality(String),
    error_type    LowCardinality(String),
    stack_trace   String CODEC(ZSTD(1)),
    record_id     String CODEC(ZSTD(1)),
    attributes    Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    pattern_id    UInt64 DEFAULT 0,
    pipeline      LowCardinality(String) DEFAULT 'default',
    kafka_topic   LowCardinality(String) DEFAULT '',
    kafka_partition UInt32 DEFAULT 0,
    kafka_offset  UInt64 DEFAULT 0 CODEC(Delta, ZSTD(1)),
    ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_message message TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 4,
    INDEX idx_pattern pattern_id TYPE set(1000) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(timestamp)
ORDER BY (toStartOfHour(timestamp), service, level, timestamp, record_id)
TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY DELETE
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

-- The TTL follows LOG_TTL_DAYS on every start (a no-op when unchanged).
ALTER TABLE {database}.logs MODIFY TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY DELETE;

-- The highest Kafka offset stored per partition, kept by a materialized view in the same
-- insert: after a crash, ingest skips what is already stored instead of writing it twice.
CREATE TABLE IF NOT EXISTS {database}.ingest_offsets
(
    topic      LowCardinality(String),
    partition  UInt32,
    max_offset SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (topic, partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.ingest_offsets_mv TO {database}.ingest_offsets AS
SELECT kafka_topic AS topic, kafka_partition AS partition, max(kafka_offset) AS max_offset
FROM {database}.logs
WHERE kafka_topic != ''
GROUP BY topic, partition;
