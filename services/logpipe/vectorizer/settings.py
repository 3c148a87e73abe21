from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from logpipe.ai.embeddings import EmbeddingSettings
from logpipe.core.settings import ServiceSettings, shared


class Settings(ServiceSettings, EmbeddingSettings):
    model_config = SettingsConfigDict(env_prefix="VECTORIZER_", extra="ignore", populate_by_name=True)

    port: int = 8004
    # Empty: embed in this process (the model is shared with an embedder in the same process).
    embedder_url: str = ""
    embedder_timeout_seconds: float = Field(30.0, gt=0)
    # As ingest's (INGEST_BATCH_MODE): adaptive batches grow while the previous one embeds.
    batch_mode: Literal["adaptive", "fixed"] = "adaptive"
    # An upper bound (adaptive): a batch grows this far only while the previous one is written.
    # Each batch has fixed costs (the masking query, the novelty search, the engine call), so
    # larger batches when behind cost about a quarter less CPU per log than 256 did.
    batch_size: int = Field(1024, ge=1, le=100_000)
    batch_max_bytes: int = Field(4 << 20, ge=0)
    batch_timeout_seconds: float = Field(1.0, gt=0, le=300)
    group_id: str = "logpipe-vectorizer"
    auto_offset_reset: str = "earliest"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    # A batch held back by retries must not cost this consumer its partitions.
    max_poll_interval_ms: int = 3_600_000
    # As ingest's (INGEST_REJOIN_AFTER_SECONDS): a consumer owning no partition this long after
    # losing its assignment, while the broker lists them, is rebuilt.
    rejoin_after_seconds: float = Field(30.0, gt=0)
    retry_attempts: int = Field(3, ge=0, le=20)
    retry_base_seconds: float = Field(0.5, ge=0, le=60)
    # A batch whose embedder or Qdrant is away is retried after base * 2^n seconds up to this;
    # after BREAKER_THRESHOLD failures in a row the dependency's circuit is open (/health).
    retry_max_seconds: float = Field(30.0, gt=0, le=600)
    breaker_threshold: int = Field(3, ge=1, le=100)
    # Records held while a write keeps failing; past this, fetching pauses (back-pressure).
    # Honoured from 4 * BATCH_SIZE up (one batch in flight and one buffered, each < 2 batches).
    max_buffered: int = Field(10_000, ge=1)
    novelty_enabled: bool = True
    novelty_threshold: float = Field(0.75, ge=0.0, le=1.0)
    # Embed messages with numbers, ids and paths masked: copies of one error that differ only
    # in values share one embedding (and one cache entry).
    mask_variables: bool = True
    # Store each log's keywords (message, error type in words, HTTP status and route, logger,
    # first stack frame, service) as a sparse vector: searches fuse a keyword ranking with the
    # vector ranking (hybrid search). Off: vector search only.
    keywords: bool = True
    # Also embed that context (without the route) with the message: the best hybrid on
    # bench/search_quality.py's questions, for about 2x the model calls on a cold cache, since
    # copies of one error then differ by logger, status and frame (docs/vectors.md).
    embed_context: bool = True
    # Embedded Qdrant only: build the HNSW index once this many points are un-indexed, then
    # each time the shard has grown by OPTIMIZE_GROWTH since the last build (0 = never; a search
    # then scans every point its filter matches). A geometric schedule: the un-indexed tail stays
    # below the indexed part, and all builds together handle at most growth / (growth - 1) x the
    # points (IndexSchedule, docs/vectors.md).
    optimize_after_points: int = Field(20_000, ge=0)
    optimize_growth: float = Field(2.0, ge=1.1, le=100)
    # Build that index in a child process on a copy of the shard and swap it in: the process
    # keeps serving meanwhile (qdrant-edge-py 0.9 holds the GIL while it builds: 45 s for 24k
    # points on 2 cores, bench/vectors_offload.py). False: in process, pausing it.
    optimize_in_child: bool = True
    # Retention of the vectors (docs/vectors.md "Retention"), checked every RETENTION_INTERVAL:
    # points whose log is older than RETENTION_DAYS go (0: LOG_TTL_DAYS, so no search finds a
    # log ClickHouse has dropped), then the oldest beyond MAX_POINTS. MAX_POINTS unset: 400,000
    # with the embedded engine, whose memory grows with its points and is given back only when
    # deleted points are rebuilt away (about 1.1 KB of heap per indexed point, bench/vector_memory.py:
    # 400,000 fit the chart's 2 Gi vectorizer), none with a Qdrant server; 0: no cap.
    retention_days: int = Field(0, ge=0, le=36500)
    max_points: int | None = Field(None, ge=0)
    retention_interval_seconds: float = Field(60.0, gt=0, le=86_400)
    qdrant_api_key: str = shared("", "QDRANT_API_KEY")

    def points_cap(self) -> int | None:
        """The cap on stored points in force, or None for none."""
        if self.max_points is None:
            return None if self.qdrant_url else EMBEDDED_MAX_POINTS
        return self.max_points or None

    def retention(self) -> int:
        return self.retention_days or self.log_ttl_days


EMBEDDED_MAX_POINTS = 400_000
