"""Pattern mining settings: one configuration for every log source (`PATTERNS_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PatternSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATTERNS_", extra="ignore", populate_by_name=True)

    # Share of a message's tokens that may differ from a pattern it joins.
    max_distance: float = Field(0.5, ge=0.0, lt=1.0)
    # Distinct values a position must show before it becomes `<*>` (twice that for Capitalised words).
    min_variants: int = Field(3, ge=2, le=100)
    # Patterns kept in memory per process (the store keeps them all); least recently used go first.
    max_patterns: int = Field(100_000, ge=1)
    # Masked messages remembered per process (masked text -> pattern id).
    cache_size: int = Field(500_000, ge=1)
    # How often a tagger reads what other replicas stored, at most (seconds; 0 = every batch with a new message).
    sync_seconds: float = Field(5.0, ge=0.0)
