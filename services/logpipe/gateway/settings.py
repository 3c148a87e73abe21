"""Gateway settings (prefix `GATEWAY_`); shared addresses come from `CommonSettings`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from logpipe.core.settings import ServiceSettings


def _packaged_dashboard() -> Path:
    """The built dashboard ships inside the package (`logpipe/gateway/static`, written by the
    frontend build), so an installed wheel serves it as a checkout does."""
    return Path(str(resources.files("logpipe.gateway") / "static"))


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    port: int = 8000
    # Create or update the ClickHouse tables at start (idempotent); off when `logpipe schema` does it.
    apply_schema: bool = True
    # Comma-separated origins allowed to call the API from a browser; empty allows none
    # (the dashboard served by the gateway itself is same-origin and needs no CORS).
    cors_origins: str = ""
    # The built dashboard; served at / when the folder holds an index.html.
    frontend_dir: Path = Field(default_factory=_packaged_dashboard)

    # Ingest limits: one request is at most this many bytes (after decompression) and records.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_records_per_request: int = Field(10_000, ge=1)
    max_record_bytes: int = Field(1024 * 1024, ge=256)
    # Loki push: label names per stream (Loki's own max_label_names_per_series is 15; labels are
    # record fields here, not series, so more are fine, but not without bound).
    max_labels_per_stream: int = Field(64, ge=1, le=10_000)
    # How long a request waits for Kafka to acknowledge before answering 503.
    produce_timeout_s: float = Field(10.0, gt=0)
    kafka_compression: str = "none"

    # Query API limits.
    max_page_size: int = Field(1000, ge=1)
    default_page_size: int = Field(100, ge=1)
    query_timeout_s: float = Field(10.0, gt=0)

    # Live tail: each WebSocket client has a queue this long; a client that falls behind
    # loses the overflow (and is told how many) instead of slowing anyone else down.
    ws_queue_size: int = Field(1000, ge=1)
    # A client that stays full this long is disconnected.
    ws_slow_client_s: float = Field(10.0, gt=0)
    # How often the events stream looks for new anomalies in the SQL store.
    events_poll_s: float = Field(2.0, gt=0)

    # Verified tokens are cached this long, so a revoke takes effect within this time.
    token_cache_s: float = Field(5.0, ge=0)
    # While the token database is away, a token verified this recently still works (0: none do).
    token_stale_s: float = Field(300.0, ge=0)

    # Rate limits (token buckets; 429 with Retry-After; a rate of 0 turns one off). Ingest
    # routes: requests per second per API token, with bursts of up to `burst` requests.
    rate_limit_ingest_per_s: float = Field(200.0, ge=0)
    rate_limit_ingest_burst: int = Field(1000, ge=1)
    # Requests without a token (health, metrics, the dashboard and its token prompt, the
    # OpenAPI document) and requests with a wrong token, per client address.
    rate_limit_anonymous_per_s: float = Field(10.0, ge=0)
    rate_limit_anonymous_burst: int = Field(100, ge=1)

    # The embedder service that turns a semantic-search query into a vector.
    embedder_url: str = "http://127.0.0.1:8003"
    # Where the analyzer service answers POST /analyze (the gateway forwards to it).
    analyzer_url: str = "http://127.0.0.1:8005"
    # Consumer groups whose lag GET /api/metrics reports (comma-separated); empty = every group.
    consumer_groups: str = ""
    # Where GET /api/pipeline reads each service's own /stats (rates, buffers, collection).
    ingest_url: str = "http://127.0.0.1:8002"
    vectorizer_url: str = "http://127.0.0.1:8004"
    # How long GET /api/pipeline waits for Kafka or a service before saying `available: false`.
    pipeline_timeout_s: float = Field(5.0, gt=0, le=60)
    # Consumer lag is sampled this often in the background (for /api/pipeline's history and the
    # logpipe_kafka_consumer_lag gauge on /metrics) and kept this long (a bounded ring).
    lag_sample_s: float = Field(10.0, gt=0)
    lag_history_s: float = Field(3600.0, gt=0, le=7 * 86400)

    @field_validator("kafka_compression")
    @classmethod
    def _compression(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"none", "gzip", "lz4", "snappy", "zstd"}:
            raise ValueError("kafka_compression must be one of none, gzip, lz4, snappy, zstd")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def consumer_group_list(self) -> list[str]:
        return [group.strip() for group in self.consumer_groups.split(",") if group.strip()]
