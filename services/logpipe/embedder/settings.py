from pydantic import Field
from pydantic_settings import SettingsConfigDict

from logpipe.ai.embeddings import EmbeddingSettings
from logpipe.core.settings import ServiceSettings


class Settings(ServiceSettings, EmbeddingSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDDER_", extra="ignore", populate_by_name=True)

    port: int = 8003
    max_batch_texts: int = Field(100, ge=1, le=10_000)
    max_text_chars: int = Field(8192, ge=1, le=1_000_000)
