"""Helpers of the gateway tests: the real app served by uvicorn (in a thread) over real Tansu,
chdb and SQLite; rows straight into ClickHouse; the real embedder service."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from support import wait_until


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

        def started() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError("the gateway did not start (see the log above)")
            return self.server.started

        wait_until(started, timeout=timeout_s, interval=0.05, message="the gateway did not start in time")
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


def embedder_service(data_dir) -> ServerThread:
    """The real embedder service on a free port, with the real model (all-MiniLM-L6-v2).

    Its default settings load the model the way the `embedding_backend` fixture does, so a test
    that asks for that fixture first shares the session's loaded model instead of exporting it
    again."""
    from logpipe.core.broker import free_port
    from logpipe.embedder.app import create_app
    from logpipe.embedder.settings import Settings

    port = free_port()
    return ServerThread(create_app(Settings(LOGPIPE_DATA_DIR=str(data_dir), port=port)), port).start()
