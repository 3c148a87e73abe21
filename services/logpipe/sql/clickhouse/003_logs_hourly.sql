-- Logs per hour and (pipeline, service, level, pattern), kept by a materialized view in the
-- same insert as `logs`: the total of a filter by service, level, pattern or pipeline over
-- all stored time is a sum over a few thousand rows here instead of a count over every
-- row's columns there (logpipe.gateway.query; docs/api.md, "Totals").
-- It is kept a day longer than `logs`; queries read it only from the oldest stored hour on.
-- Signed: `logpipe schema --reorder-logs` takes rows out with negative counts as it moves them.
CREATE TABLE IF NOT EXISTS {database}.logs_hourly
(
    hour        DateTime('UTC'),
    pipeline    LowCardinality(String),
    service     LowCardinality(String),
    level       LowCardinality(String),
    pattern_id  UInt64,
    logs        Int64
)
ENGINE = SummingMergeTree
PARTITION BY toDate(hour)
ORDER BY (hour, pipeline, service, level, pattern_id)
TTL hour + INTERVAL {ttl_days} DAY + INTERVAL 1 DAY DELETE
SETTINGS ttl_only_drop_parts = 1;

ALTER TABLE {database}.logs_hourly MODIFY TTL hour + INTERVAL {ttl_days} DAY + INTERVAL 1 DAY DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.logs_hourly_mv TO {database}.logs_hourly AS
SELECT toStartOfHour(timestamp) AS hour, pipeline, service, level, pattern_id, count() AS logs
FROM {database}.logs
GROUP BY hour, pipeline, service, level, pattern_id;

-- Facts about the schema itself, such as the first hour `logs_hourly` holds in full
-- (ClickHouseStore.apply_schema): a view made over a table that held rows already counts
-- only what is inserted after it.
CREATE TABLE IF NOT EXISTS {database}.schema_state
(
    name        String,
    value       String,
    updated_at  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY name
