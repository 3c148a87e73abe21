-- Pattern state shared by every ingest replica (logpipe.patterns.store).
-- A row per (pattern, version): the newest template wins; ids never change meaning.
CREATE TABLE IF NOT EXISTS {database}.patterns
(
    pattern_id  UInt64,
    template    String CODEC(ZSTD(3)),
    updated_at  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY pattern_id;

-- When two patterns converge, the merged id points at the survivor. Rows tagged earlier keep
-- their id and resolve through this table at query time: no log row is ever rewritten.
CREATE TABLE IF NOT EXISTS {database}.pattern_aliases
(
    alias_id    UInt64,
    pattern_id  UInt64,
    updated_at  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY alias_id;
