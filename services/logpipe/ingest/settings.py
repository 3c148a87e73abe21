from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from logpipe.core.record import FORWARDED_LEVELS, normalize_level
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
    # A consumer that lost its partitions and owns none this long, while the broker lists them,
    # is rebuilt (core/consumer.py, "Rejoining"); the wait doubles per rebuild, up to 5 minutes.
    rejoin_after_seconds: float = Field(30.0, gt=0)
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
    # Levels forwarded to vectorization-queue (embedded for semantic search and novelty):
    # comma-separated names in any common spelling, e.g. "ERROR,FATAL" (the operator sets it
    # from a LogPipeline's `vectors.levels`).
    vectorize_levels: str = ",".join(sorted(level.value for level in FORWARDED_LEVELS))

    @field_validator("vectorize_levels")
    @classmethod
    def _known_levels(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [name for name in names if normalize_level(name) is None]
        if unknown:
            raise ValueError(f"not a log level: {', '.join(unknown)}")
        return ",".join(sorted({normalize_level(name).value for name in names}))

    @property
    def vectorize_level_set(self) -> frozenset:
        """The levels to forward; empty forwards nothing."""
        return frozenset(normalize_level(name) for name in self.vectorize_levels.split(",") if name)
