from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from logpipe.core.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", populate_by_name=True)

    port: int = 8002
    # adaptive: a batch is cut whenever the pipeline has room for one, so it grows with the
    # incoming rate while the previous insert runs (a lone log goes out at once), bounded by
    # BATCH_SIZE records, BATCH_MAX_BYTES and BATCH_TIMEOUT_SECONDS (the latency target).
    # fixed: cut at BATCH_SIZE records or after BATCH_TIMEOUT_SECONDS, whatever the writer does.
    batch_mode: Literal["adaptive", "fixed"] = "adaptive"
    batch_size: int = Field(50_000, ge=1, le=200_000)
    batch_max_bytes: int = Field(32 << 20, ge=0)
    batch_timeout_seconds: float = Field(1.0, gt=0, le=300)
    max_record_bytes: int = Field(1_048_576, ge=256)
    group_id: str = "logpipe-ingest"
    auto_offset_reset: str = "earliest"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    # A batch held back by a ClickHouse outage must not cost this consumer its partitions.
    max_poll_interval_ms: int = 3_600_000
    breaker_threshold: int = 3
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    # Batches in each pipeline stage (parse, write) at once: the consumer holds up to twice this
    # many cut batches plus one buffered, then pauses fetching (memory: up to BATCH_MAX_BYTES
    # each, plus a poll).
    pipeline_depth: int = Field(2, ge=1, le=16)
    # Batches parsed and tagged at once (each in its own thread; the GIL is mostly released).
    build_workers: int = Field(2, ge=1, le=16)
    apply_schema: bool = True
    tag_patterns: bool = True
