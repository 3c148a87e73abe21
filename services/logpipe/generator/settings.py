from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from logpipe.core.settings import ServiceSettings
from logpipe.generator.service import DEFAULT_SERVICES


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENERATOR_", extra="ignore", populate_by_name=True)

    port: int = 8001
    autostart: bool = False
    rate_per_second: float = Field(100.0, ge=1, le=100_000)
    error_rate_percentage: float = Field(5.0, ge=0, le=100)
    services: tuple[str, ...] = DEFAULT_SERVICES
    # JSON list of incidents ({"kind","service","start_after_s","duration_s","family",...}); "default" or "none".
    incidents: str = "default"
    seed: int | None = None
    environment: str = "production"

    @field_validator("services", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        return value
