"""Helpers of the gateway tests: the real app served by uvicorn (in a thread) over real Tansu,
chdb and SQLite; rows straight into ClickHouse; stand-ins for the embedding model."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from fastapi import FastAPI



class ServerThread:
    """An ASGI app under uvicorn in its own thread and event loop.

    A thread (not the test's loop) so blocking clients, such as the OpenTelemetry exporter
    and python-logging-loki, can call it from a test without deadlocking.
    """

    def __init__(self, app, port: int) -> None:
        import uvicorn

        self.port = port
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                lifespan="on", ws_ping_interval=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"gateway-{port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the gateway did not start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not start in time")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@dataclass
class Gateway:
    url: str
    settings: Any
    app: Any
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")


def gateway_settings(kafka_bootstrap: str, topic_prefix: str, clickhouse, data_dir, **overrides):
    from logpipe.core.broker import free_port
    from logpipe.gateway.settings import Settings

    # Unused ports, so a test never reaches a developer's running embedder or analyzer.
    options = dict(embedder_url=f"http://127.0.0.1:{free_port()}", analyzer_url=f"http://127.0.0.1:{free_port()}",
                   kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                   clickhouse_url=clickhouse.dsn, clickhouse_database=clickhouse.database,
                   data_dir=data_dir, pipeline="default", events_poll_s=0.3,
                   frontend_dir=data_dir / "no-dashboard")
    options.update(overrides)
    return Settings(**options)


def start_gateway(settings) -> tuple[Gateway, ServerThread]:
    from logpipe.core.broker import free_port
    from logpipe.gateway.app import create_app
    from logpipe.gateway.auth import create_token, open_engine

    engine = open_engine(settings)
    tokens = {
        "admin": create_token(engine, "admin", ["admin"]).token,
        "read": create_token(engine, "reader", ["read"]).token,
        "ingest": create_token(engine, "shipper", ["ingest"]).token,
        "bound": create_token(engine, "team-a", ["read"], pipeline="team-a").token,
        "bound_other": create_token(engine, "team-b-shipper", ["ingest", "read"], pipeline="team-b").token,
    }
    app = create_app(settings)
    server = ServerThread(app, free_port()).start()
    return Gateway(server.url, settings, app, tokens), server


LOG_COLUMNS = ("timestamp", "service", "level", "message", "trace_id", "user_id", "record_id", "pattern_id",
               "pipeline", "http_status")


def insert_logs(store, rows: list[dict[str, Any]]) -> None:
    """Rows straight into ClickHouse `logs` (what ingest would have written)."""
    columns = list(LOG_COLUMNS)
    values = []
    for row in rows:
        values.append([row.get(column, default) for column, default in zip(columns, (
            None, "api", "INFO", "", "", "", None, 0, "default", None))])
    store.insert_rows("logs", values, columns)


def make_rows(count: int, start: datetime | None = None, step_ms: int = 1000, **fields) -> list[dict[str, Any]]:
    start = start or datetime.now(timezone.utc) - timedelta(minutes=30)
    rows = []
    for index in range(count):
        row = {"timestamp": start + timedelta(milliseconds=index * step_ms), "message": f"event number {index}",
               "record_id": f"r{index:06d}"}
        row.update({key: value(index) if callable(value) else value for key, value in fields.items()})
        rows.append(row)
    return rows


DIMENSION = 64


def hashed(text: str) -> np.ndarray:
    """A stand-in for the model: words hashed into 64 dimensions, so shared words mean closeness."""
    vector = np.zeros(DIMENSION, dtype=np.float32)
    for word in text.lower().split():
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSION] += 1
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def fake_embedder_app() -> FastAPI:
    """The embedder service's `POST /embed/batch` contract."""
    app = FastAPI()

    @app.post("/embed/batch")
    async def embed_batch(body: dict):
        vectors = [hashed(text).tolist() for text in body["texts"]]
        return {"embeddings": vectors, "model": "hashing", "dimension": DIMENSION, "count": len(vectors)}

    return app


def hashing_embed(texts) -> np.ndarray:
    """The analyzer's embed callable, with the same stand-in model."""
    return np.stack([hashed(text) for text in texts]) if len(texts) else np.zeros((0, DIMENSION), np.float32)
