"""Settings shared by every service. Only settings read the environment.

Shared addresses (`KAFKA_BOOTSTRAP_SERVERS`, `CLICKHOUSE_URL`, ...) carry no prefix; each
service's own settings subclass `ServiceSettings` with an env prefix such as `INGEST_`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def shared(default, name: str, **kwargs):
    """A field read from an unprefixed variable, whatever the service's prefix."""
    return Field(default, validation_alias=AliasChoices(name, name.lower()), **kwargs)


class CommonSettings(BaseSettings):
    """Addresses of the external systems; the defaults are the embedded, one-machine ones."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = shared("127.0.0.1:9092", "KAFKA_BOOTSTRAP_SERVERS")
    # Consumers verify record CRCs only when asked (librdkafka's default too): TCP already
    # checksums, and the check cost ingest a tenth of its consume time.
    kafka_check_crcs: bool = shared(False, "KAFKA_CHECK_CRCS")
    data_dir: Path = shared(Path("data"), "LOGPIPE_DATA_DIR")
    # A ready ONNX export of the embedding model (the image bakes one in); empty: DATA_DIR/models,
    # exported there on first use.
    onnx_dir: Path | None = shared(None, "LOGPIPE_ONNX_DIR")
    # Empty means the embedded in-process ClickHouse (chdb) under DATA_DIR/clickhouse.
    clickhouse_url: str = shared("", "CLICKHOUSE_URL")
    clickhouse_database: str = shared("logpipe", "CLICKHOUSE_DATABASE")
    # Embedded engine only (a server sets `uncompressed_cache_size` in its own config): memory
    # for decompressed blocks, so a dashboard asking again for the newest logs reads them from
    # memory instead of decompressing the same tail granules each time. 0 turns it off.
    clickhouse_uncompressed_cache_mb: int = shared(1024, "CLICKHOUSE_UNCOMPRESSED_CACHE_MB", ge=0)
    # A copy of `logs` ordered by time (ClickHouse projection): the newest logs of all services
    # come from a few granules even where an hour holds millions of rows, instead of the tail
    # of every (service, level) run of the hour (`logs` is ordered by hour first). It costs 2.5x
    # the storage and 5-12 % of ingest throughput (docs/api.md). Every service must agree: it is
    # a table property.
    clickhouse_time_projection: bool = shared(False, "CLICKHOUSE_TIME_PROJECTION")
    # The embedded broker (`logpipe dev` / `logpipe broker`) keeps every record in memory
    # (core/broker.py): a warning is logged when its memory passes this, and at each doubling.
    broker_memory_warn_mb: int = shared(1024, "LOGPIPE_BROKER_MEMORY_WARN_MB", ge=0)
    log_ttl_days: int = shared(90, "LOG_TTL_DAYS", ge=1, le=36500)
    # `logpipe dev` only: run the generator as a process of its own (`logpipe run generator`)
    # instead of in the services' process, where it shares one event loop and one GIL with
    # every service (docs/capacity.md). Off: `make dev`'s one process, as before.
    dev_generator_process: bool = shared(False, "LOGPIPE_DEV_GENERATOR_PROCESS")
    # What one log may look like (core/shippers.py RecordLimits; docs/ingest.md "Hostile input"):
    # deeper or wider logs are refused with the reason, a time this far ahead of the arrival
    # time is clamped to it.
    max_nesting_depth: int = shared(20, "LOGPIPE_MAX_NESTING_DEPTH", ge=2, le=200)
    max_attributes: int = shared(1000, "LOGPIPE_MAX_ATTRIBUTES", ge=1, le=100_000)
    max_future_skew_s: float = shared(600.0, "LOGPIPE_MAX_FUTURE_SKEW_S", ge=0)
    topic_prefix: str = shared("", "TOPIC_PREFIX")
    pipeline: str = shared("default", "LOGPIPE_PIPELINE")
    qdrant_url: str = shared("", "QDRANT_URL")
    qdrant_collection: str = shared("log_embeddings", "QDRANT_COLLECTION")
    database_url: str = shared("", "DATABASE_URL")
    redis_url: str = shared("", "REDIS_URL")
    log_level: str = shared("INFO", "LOG_LEVEL")
    # auto: the human form on a terminal, JSON lines otherwise (core/logging.py).
    log_format: Literal["auto", "json", "text"] = shared("auto", "LOG_FORMAT")
    # Python's cyclic GC (core/gc_tuning.py): 0 leaves Python's own thresholds.
    gc_gen0_threshold: int = shared(100_000, "LOGPIPE_GC_GEN0_THRESHOLD", ge=0)
    gc_full_collect_seconds: float = shared(60.0, "LOGPIPE_GC_FULL_COLLECT_SECONDS", gt=0)

    @property
    def clickhouse_dsn(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        dsn = f"chdb://{(self.data_dir / 'clickhouse').resolve()}"
        if self.clickhouse_uncompressed_cache_mb:
            dsn += f"?uncompressed_cache_size={self.clickhouse_uncompressed_cache_mb * 1024 * 1024}"
        return dsn


class ServiceSettings(CommonSettings):
    """Base of every service's settings: where it listens, and who may change it."""

    host: str = "127.0.0.1"
    port: int = 8000
    # A service's own routes that change state or cost compute (`/control`, `/analyze`,
    # `/embed`, ...): auto asks for a token when the service listens on more than loopback,
    # on always, off never (logpipe.tokens.ServiceGuard).
    service_auth: Literal["auto", "on", "off"] = shared("auto", "LOGPIPE_SERVICE_AUTH")
    # What services send each other on those routes (the chart generates one); an API token
    # with the route's scope works too. At least 32 characters; empty: none.
    service_token: SecretStr = shared(SecretStr(""), "LOGPIPE_SERVICE_TOKEN")

    @field_validator("service_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value()) < 32:
            raise ValueError("LOGPIPE_SERVICE_TOKEN must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return value

    def service_headers(self) -> dict[str, str]:
        """What this service sends to another one's guarded routes."""
        secret = self.service_token.get_secret_value()
        return {"Authorization": f"Bearer {secret}"} if secret else {}
