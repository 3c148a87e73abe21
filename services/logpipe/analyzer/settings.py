"""Analyzer settings (prefix `ANALYZER_`, plus the unprefixed `ANALYSIS_SCHEDULE_CRON`)."""

from __future__ import annotations

from croniter import croniter
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from logpipe.core.settings import ServiceSettings, shared


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ANALYZER_", extra="ignore", populate_by_name=True)

    port: int = 8005

    # When the long-lived service runs an analysis by itself (UTC); empty turns it off, e.g.
    # when a Kubernetes CronJob calls `logpipe analyze` instead.
    schedule_cron: str = shared("0 2 * * *", "ANALYSIS_SCHEDULE_CRON")
    window_hours: float = Field(24.0, gt=0, le=24 * 31)
    # The SQL database's circuit: open after this many failed run starts in a row; a scheduled
    # start is retried after base * 2^n seconds, up to the max (core/circuit.py).
    breaker_threshold: int = Field(3, ge=1, le=100)
    retry_base_seconds: float = Field(0.5, gt=0, le=60)
    retry_max_seconds: float = Field(30.0, gt=0, le=600)

    # LLM: auto = a local Ollama that answers and has `llm_model`, else a GGUF file, else none.
    llm_backend: str = "auto"  # auto | ollama | openai | llamacpp | none
    llm_model: str = "llama3.1:8b"
    ollama_host: str = shared("http://127.0.0.1:11434", "OLLAMA_HOST")
    openai_base_url: str = ""
    openai_api_key: SecretStr = SecretStr("")
    gguf_path: str = ""
    llm_timeout_s: float = Field(120.0, gt=0)

    # Embeddings of pattern templates (cross-service clusters): a TEI server, else the local model.
    embeddings_url: str = ""
    embedding_runtime: str = "onnx"  # onnx | torch, for the local model
    similarity_threshold: float = Field(0.80, gt=0, le=1)

    # Novel errors (unlike any earlier error) are read back from the vectorizer's topic.
    novel_errors_enabled: bool = True
    novel_errors_timeout_s: float = Field(10.0, gt=0)

    # Anomaly thresholds (z-scores of hourly counts against baselines).
    z_low: float = Field(4.0, gt=0)
    z_medium: float = Field(6.0, gt=0)
    z_high: float = Field(9.0, gt=0)
    z_critical: float = Field(14.0, gt=0)
    min_count: int = Field(10, ge=1)
    min_ratio: float = Field(1.5, ge=1)
    min_baseline_samples: int = Field(3, ge=2)
    quiet_hours: int = Field(2, ge=1)
    # How many days before the window each hour is compared with (read from ClickHouse).
    baseline_days: int = Field(14, ge=1, le=90)
    # How far back a pattern must not have been seen to count as new.
    new_pattern_lookback_days: int = Field(30, ge=1)
    max_patterns: int = Field(5000, ge=10)
    top_patterns: int = Field(25, ge=1)

    @field_validator("schedule_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        value = value.strip()
        if value and not croniter.is_valid(value):
            raise ValueError(f"ANALYSIS_SCHEDULE_CRON {value!r} is not a valid cron expression")
        return value

    @field_validator("llm_backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        from logpipe.ai.llm import BACKENDS

        value = value.strip().lower()
        if value not in BACKENDS:
            raise ValueError(f"ANALYZER_LLM_BACKEND must be one of {', '.join(BACKENDS)}")
        return value
