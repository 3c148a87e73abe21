"""Helpers shared by tests (importable as `support`: pytest puts tests/ on sys.path).

- the real ingest app, producing to Tansu, and waiting on a deadline (`wait_for`, `wait_until`);
- a throwaway PostgreSQL server (`start_postgres`);
- LLM servers that speak Ollama's /api/chat and OpenAI's /v1/chat/completions (`OllamaServer`,
  `OpenAIServer`).
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import orjson

from logpipe.core.broker import free_port
from logpipe.core.kafka import new_producer, send_values


@contextlib.asynccontextmanager
async def running_ingest(kafka_bootstrap, topic_prefix, clickhouse, **overrides):
    """The real ingest app (lifespan included) against Tansu and chdb."""
    from logpipe.ingest.app import create_app
    from logpipe.ingest.settings import Settings

    options = dict(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        clickhouse_url=clickhouse.dsn,
        clickhouse_database=clickhouse.database,
        batch_size=500,
        batch_timeout_seconds=0.5,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        group_id=f"ingest-{topic_prefix}",
    )
    options.update(overrides)
    app = create_app(Settings(**options))
    async with app.router.lifespan_context(app):
        yield app


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        await send_values(producer, topic, values)
    finally:
        await producer.stop()


async def produce_to_every_partition(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    """Values spread over all `partitions` explicitly (send_values' round robin is process-wide,
    so where its next batch lands depends on what other code sent before)."""
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, partition=i % partitions) for i, value in enumerate(values)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


Message = str | Callable[[], str] | None


def _describe(message: Message) -> str:
    text = message() if callable(message) else message
    return f"condition not met in time: {text}" if text else "condition not met in time"


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, message: Message = None):
    """Poll `predicate` (sync or async) until it returns something truthy, which is returned;
    AssertionError with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(_describe(message))
        await asyncio.sleep(interval)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, message: Message = None):
    """`wait_for` for code without an event loop (threads, subprocesses)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(_describe(message))
        time.sleep(interval)


# --- a throwaway PostgreSQL server ------------------------------------------------------------
# Debian's `postgresql` binaries, a temporary data directory, 127.0.0.1 on a free port, and a
# password generated per run (no default password). As root, the server runs as the `postgres`
# user (PostgreSQL refuses to run as root).

POSTGRES_USER = "logpipe_test"


def _postgres_bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL binaries not found: install Debian's `postgresql` package "
                       "(apt-get install -y postgresql) to run the PostgreSQL tests")


@dataclass
class PostgresServer:
    base: Path
    port: int
    password: str
    run_as: str | None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{POSTGRES_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh database, so each test starts empty."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=POSTGRES_USER, password=self.password,
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        _run_as(self.run_as, [str(_postgres_bin_dir() / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate",
                              "-w", "stop"], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def _run_as(user: str | None, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if user:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}\n{result.stderr}")
    return result


def start_postgres() -> PostgresServer:
    bin_dir = _postgres_bin_dir()
    run_as = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="logpipe-pg-"))
    password = secrets.token_urlsafe(24)
    password_file = base / "password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    if run_as:
        account = pwd.getpwnam(run_as)
        os.chown(base, account.pw_uid, account.pw_gid)
        os.chown(password_file, account.pw_uid, account.pw_gid)
    _run_as(run_as, [str(bin_dir / "initdb"), "-D", str(base / "data"), "-U", POSTGRES_USER,
                     f"--pwfile={password_file}", "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"])
    password_file.unlink()
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off -c max_connections=50"
    _run_as(run_as, [str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-o", options, "-l", str(base / "log"),
                     "-w", "-t", "60", "start"])
    return PostgresServer(base, port, password, run_as)


# --- LLM servers -------------------------------------------------------------------------------
# Real HTTP servers on a free port (a thread each), so the real clients (`ollama`, httpx) go
# through their whole request/response path. They check the request the way the real servers
# do (400 with Ollama's `{"error": ...}` shape for a bad body, 404 for an unknown model), record
# every request, and answer with whatever `respond(request_body)` returns; `delay` makes them
# slow (timeouts).

Responder = Callable[[dict[str, Any]], Any]


def facts_from(body: dict[str, Any]) -> dict[str, Any]:
    """The facts JSON the analyzer put in the user message."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    start = user.index("{")
    end = user.rindex("\n\nAnswer")
    return json.loads(user[start:end])


def grounded_answer(body: dict[str, Any]) -> dict[str, Any]:
    """What a good model writes: claims citing ids from the facts, plus one invented id."""
    facts = facts_from(body)
    top = facts["patterns"][0]["id"]
    anomalous = [a["pattern_id"] for a in facts["anomalies"] if a["pattern_id"]] or [top]
    cluster = facts["clusters"][0] if facts["clusters"] else None
    return {
        "executive_summary": {"text": f"LLM summary: pattern {anomalous[0]} spiked.", "pattern_ids": [anomalous[0]]},
        "cluster_insights": ([{"cluster_id": cluster["id"], "title": "Shared failure", "text": "LLM insight on cluster.",
                               "pattern_ids": cluster["pattern_ids"]}] if cluster else []) + [
            {"cluster_id": "C99", "title": "Invented", "text": "Cites an id that does not exist.",
             "pattern_ids": ["123456789"]}],
        "recommendations": [
            {"priority": "high", "action": "LLM: roll back the deploy", "rationale": "spike after deploy",
             "pattern_ids": [anomalous[0]]},
            {"priority": "low", "action": "LLM: uncited advice", "rationale": "no ids", "pattern_ids": []},
            {"priority": "medium", "action": "LLM: invented", "rationale": "unknown id", "pattern_ids": ["42"]},
        ],
    }


class _LLMServer:
    def __init__(self, respond: Responder, delay: float = 0.0) -> None:
        self.respond = respond
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = orjson.dumps(payload)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                server.handle_get(self)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, {"error": "invalid JSON body"})
                    return
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if server.delay:
                    time.sleep(server.delay)  # a slow model is what the timeout tests are about
                server.handle_post(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class OllamaServer(_LLMServer):
    """Ollama's /api/chat (non-streaming) and /api/tags."""

    def __init__(self, respond: Responder = grounded_answer, models: tuple[str, ...] = ("llama3.1:8b",),
                 delay: float = 0.0, raw_content: str | None = None) -> None:
        super().__init__(respond, delay)
        self.models = models
        self.raw_content = raw_content

    def handle_get(self, handler) -> None:
        if handler.path == "/api/tags":
            handler._send(200, {"models": [{"name": m, "model": m, "modified_at": "2026-01-01T00:00:00Z",
                                            "size": 4_920_000_000, "digest": "sha256:" + "0" * 64,
                                            "details": {"format": "gguf", "family": "llama"}} for m in self.models]})
        else:
            handler._send(404, {"error": "not found"})

    def handle_post(self, handler, body: dict[str, Any]) -> None:
        if handler.path != "/api/chat":
            handler._send(404, {"error": "not found"})
            return
        problems = []
        if not isinstance(body.get("model"), str) or not body["model"]:
            problems.append("model is required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and m.get("role") in ("system", "user", "assistant", "tool")
                and isinstance(m.get("content"), str) for m in messages):
            problems.append("messages must be a list of {role, content}")
        if "format" in body and not (body["format"] in ("", "json") or isinstance(body["format"], dict)):
            problems.append("format must be \"json\" or a JSON schema object")
        if "options" in body and not isinstance(body["options"], dict):
            problems.append("options must be an object")
        if problems:
            handler._send(400, {"error": "; ".join(problems)})
            return
        if body["model"] not in self.models:
            handler._send(404, {"error": f"model \"{body['model']}\" not found, try pulling it first"})
            return
        content = self.raw_content if self.raw_content is not None else orjson.dumps(self.respond(body)).decode()
        handler._send(200, {
            "model": body["model"],
            "created_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "message": {"role": "assistant", "content": content},
            "done": True, "done_reason": "stop",
            "total_duration": 2_500_000_000, "load_duration": 100_000_000,
            "prompt_eval_count": 812, "prompt_eval_duration": 400_000_000,
            "eval_count": 230, "eval_duration": 2_000_000_000,
        })


class OpenAIServer(_LLMServer):
    """OpenAI's /v1/chat/completions with `response_format: json_schema`."""

    def __init__(self, respond: Responder = grounded_answer, api_key: str = "", delay: float = 0.0,
                 finish_reason: str = "stop", status: int = 200) -> None:
        super().__init__(respond, delay)
        self.api_key = api_key
        self.finish_reason = finish_reason
        self.status = status

    def handle_get(self, handler) -> None:
        handler._send(404, {"error": {"message": "not found"}})

    def handle_post(self, handler, body: dict[str, Any]) -> None:
        if handler.path != "/v1/chat/completions":
            handler._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        if self.api_key and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            handler._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
            return
        if self.status != 200:
            handler._send(self.status, {"error": {"message": "server error", "type": "server_error"}})
            return
        response_format = body.get("response_format") or {}
        schema = (response_format.get("json_schema") or {}).get("schema")
        if response_format.get("type") != "json_schema" or not isinstance(schema, dict):
            handler._send(400, {"error": {"message": "response_format must be json_schema with a schema",
                                          "type": "invalid_request_error"}})
            return
        handler._send(200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": self.finish_reason,
                         "message": {"role": "assistant", "content": orjson.dumps(self.respond(body)).decode()}}],
            "usage": {"prompt_tokens": 800, "completion_tokens": 200, "total_tokens": 1000},
        })
