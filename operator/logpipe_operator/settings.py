"""Operator settings (prefix `OPERATOR_`). Only settings read the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from logpipe.core.settings import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="OPERATOR_", extra="ignore", populate_by_name=True)

    # Liveness (`/healthz`) and Prometheus metrics (`/metrics`) listen here.
    host: str = "0.0.0.0"
    health_port: int = Field(8080, ge=0, le=65535)
    metrics_port: int = Field(9090, ge=0, le=65535)
    # How often each pipeline's lag is read and its consumers scaled (and drift re-checked).
    scale_interval_seconds: float = Field(30.0, gt=0)
    # The first retry of a failing dependency, doubled on each retry up to the maximum.
    retry_base_seconds: float = Field(5.0, gt=0)
    retry_max_seconds: float = Field(300.0, gt=0)
    # Kubernetes events on changes and failures (kmock in tests cannot store generated names).
    post_events: bool = True
    kafka_timeout_seconds: float = Field(10.0, gt=0)
    # A NetworkPolicy in front of each consumer: only the metrics scraper reaches its port
    # (label selectors as JSON, e.g. {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}};
    # empty: any namespace / any pod there). The chart sets these from `networkPolicy`.
    network_policies: bool = True
    metrics_namespace_selector: dict[str, Any] = Field(default_factory=dict)
    metrics_pod_selector: dict[str, Any] = Field(default_factory=dict)
    # Watch these namespaces only (comma-separated); empty watches every namespace.
    namespaces: str = ""
    # A pipeline naming no Qdrant URL: the operator prepares the embedded engine here, as
    # `logpipe schema` does on one machine (OPERATOR_DATA_DIR, else LOGPIPE_DATA_DIR).
    data_dir: Path = Field(Path("data"), validation_alias=AliasChoices("OPERATOR_DATA_DIR", "LOGPIPE_DATA_DIR",
                                                                         "data_dir"))
