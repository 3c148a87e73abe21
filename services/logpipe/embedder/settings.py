from pydantic import Field
from pydantic_settings import SettingsConfigDict

from logpipe.ai.embeddings import EmbeddingSettings
from logpipe.core.settings import ServiceSettings


class Settings(ServiceSettings, EmbeddingSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDDER_", extra="ignore", populate_by_name=True)

    port: int = 8003
    max_batch_texts: int = Field(100, ge=1, le=10_000)
    max_text_chars: int = Field(8192, ge=1, le=1_000_000)
    # Redis cache: after this many failed calls in a row its circuit opens and Redis is skipped
    # (every text a miss) for base * 2^n seconds, up to the max, before the next trial.
    cache_breaker_threshold: int = Field(3, ge=1, le=100)
    cache_retry_base_seconds: float = Field(0.5, gt=0, le=60)
    cache_retry_max_seconds: float = Field(30.0, gt=0, le=600)
