"""Gateway speed: GET /api/logs latency over a large table, and ingest requests/s.

    .venv/bin/python bench/query.py [--rows 10000000] [--requests 40] [--ingest-seconds 10] [--writing 10000]

Fills a temporary embedded ClickHouse (chdb) with `--rows` synthetic logs spread over 7
days (INSERT ... SELECT FROM numbers(): seconds, not minutes), serves the real gateway with
uvicorn, and times each common filter of /api/logs (with its total) as a user's dashboard
sends it. Then POSTs JSON-lines batches to /api/ingest (Kafka: the embedded Tansu) from
several concurrent clients. With `--writing N`, a thread of the gateway's process inserts N
logs a second into the same ClickHouse meanwhile, as ingest does under `logpipe run all`.
Prints one JSON line; the target is p95 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import orjson

SERVICES = ["checkout", "payments", "cart", "search", "auth", "inventory", "shipping", "email", "gateway",
            "recommendations", "catalog", "orders", "billing", "notifications", "profile", "reviews", "ads",
            "currency", "fraud", "analytics"]
TEMPLATES = ["request completed in {n} ms", "user {n} logged in", "cache miss for key session:{n}",
             "payment declined for order {n}: insufficient funds", "database connection timeout after {n} ms",
             "retrying upstream call attempt {n}", "GET /api/products/{n} 200", "order {n} shipped",
             "failed to reserve stock for sku {n}", "slow query took {n} ms", "token refreshed for client {n}",
             "circuit breaker open for dependency {n}"]


def fill(store, rows: int, days: int = 7) -> float:
    """`rows` logs over the last `days` days, newest now; returns seconds taken."""
    started = time.perf_counter()
    end_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    chunk = 2_000_000
    for offset in range(0, rows, chunk):
        insert_synthetic(store, offset, min(chunk, rows - offset), 0, rows, end_ms - days * 86_400_000, end_ms)
    return time.perf_counter() - started


def insert_synthetic(store, offset: int, count: int, first: int, rows: int, start_ms: int, end_ms: int,
                     pipeline: str = "default") -> None:
    """Logs number `offset` to `offset + count`, of `rows` numbered from `first` spread evenly over
    [start_ms, end_ms)."""
    span_ms = end_ms - start_ms
    services = "[" + ",".join(f"'{s}'" for s in SERVICES) + "]"
    heads = "[" + ",".join("'" + t.split("{n}")[0] + "'" for t in TEMPLATES) + "]"
    tails = "[" + ",".join("'" + t.split("{n}")[1] + "'" for t in TEMPLATES) + "]"
    store.command(f"""
        INSERT INTO {store.table('logs')}
            (timestamp, service, level, message, logger, host, trace_id, span_id, user_id, request_id,
             http_method, http_path, http_status, duration_ms, record_id, pattern_id, pipeline)
        SELECT
            fromUnixTimestamp64Milli(toInt64({start_ms} + intDiv((n - {first}) * {span_ms}, {rows})),
                                     'UTC'),
            {services}[cityHash64(n, 1) % {len(SERVICES)} + 1],
            multiIf(cityHash64(n, 2) % 100 < 3, 'ERROR', cityHash64(n, 2) % 100 < 9, 'WARN',
                    cityHash64(n, 2) % 100 < 30, 'DEBUG', 'INFO'),
            concat({heads}[t + 1], toString(n % 99991), {tails}[t + 1]),
            'app.main', concat('node-', toString(cityHash64(n, 3) % 40)),
            lower(hex(cityHash64(intDiv(n, 4), 4))), lower(hex(cityHash64(n, 5) % 4294967296)),
            concat('u-', toString(cityHash64(n, 6) % 100000)), toString(generateUUIDv4(n)),
            'GET', concat('/api/v1/items/', toString(n % 1000)), 200 + (cityHash64(n, 7) % 4) * 100,
            (cityHash64(n, 8) % 5000) / 10.0, toString(generateUUIDv4(n + 1)),
            t + 1000 * (cityHash64(n, 1) % {len(SERVICES)}) + 1, '{pipeline}'
        FROM (SELECT number + {offset} AS n, cityHash64(number + {offset}, 9) % {len(TEMPLATES)} AS t
              FROM numbers({count}))
        SETTINGS max_insert_threads = 2, max_block_size = 262144
    """)


WRITER_PIPELINE = "bench-writer"  # its rows are deleted again at the end, so a kept --data-dir stays as filled


class Writer(threading.Thread):
    """Inserts `per_second` new logs once a second, as ingest does in the same process
    (`logpipe run all`), through a store of its own."""

    def __init__(self, store, per_second: int) -> None:
        super().__init__(daemon=True)
        self.store, self.per_second = store, per_second
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        offset = 10**12  # far from the filled rows' numbers
        while not self.stop.is_set():
            started = time.perf_counter()
            now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
            insert_synthetic(self.store, offset, self.per_second, offset, self.per_second, now_ms - 1000, now_ms,
                             WRITER_PIPELINE)
            offset += self.per_second
            self.written += self.per_second
            self.stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))


class Server:
    def __init__(self, app, port: int) -> None:
        import uvicorn

        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def time_queries(url: str, token: str, sample: dict, requests: int) -> dict:
    now = datetime.now(timezone.utc)
    cases = {
        "latest": {},
        "level": {"level": "ERROR"},
        "service": {"service": "checkout"},
        "service_level": {"service": "payments", "level": "ERROR,WARN"},
        "last_hour": {"start": (now - timedelta(hours=1)).isoformat()},
        "day_range_service": {"service": "search", "start": (now - timedelta(days=3)).isoformat(),
                              "end": (now - timedelta(days=2)).isoformat()},
        "trace_id": {"trace_id": sample["trace_id"]},
        "pattern_id": {"pattern_id": int(sample["pattern_id"]), "since": "1d"},
    }
    extra = {"contains_1h": {"contains": "connection timeout", "since": "1h"},
             "contains_7d": {"contains": "connection timeout"}}
    out: dict = {"cases": {}}
    common: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for name, params in {**cases, **extra}.items():
            timings = []
            total = None
            rounds = requests if name in cases else max(5, requests // 4)
            for index in range(rounds + 2):
                started = time.perf_counter()
                response = await client.get("/api/logs", params={**params, "limit": 100})
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                body = response.json()
                total = body["total"]
                if index >= 2:  # the first two warm caches
                    timings.append(elapsed)
            # The next page of the same filter, as a user scrolling would ask for it.
            out["cases"][name] = {"p50_ms": round(percentile(timings, 0.5), 2),
                                  "p95_ms": round(percentile(timings, 0.95), 2), "total": total}
            if name in cases:
                common.extend(timings)
        page_timings = []
        cursor = None
        for _ in range(requests):
            started = time.perf_counter()
            body = (await client.get("/api/logs", params={"service": "cart", "limit": 100,
                                                          **({"cursor": cursor} if cursor else {})})).json()
            page_timings.append((time.perf_counter() - started) * 1000)
            cursor = body["next_cursor"]
        out["cases"]["next_pages"] = {"p50_ms": round(percentile(page_timings, 0.5), 2),
                                      "p95_ms": round(percentile(page_timings, 0.95), 2)}
        common.extend(page_timings)
    out["p50_ms"] = round(percentile(common, 0.5), 2)
    out["p95_ms"] = round(percentile(common, 0.95), 2)
    out["mean_ms"] = round(statistics.fmean(common), 2)
    return out


async def time_ingest(url: str, token: str, seconds: float, batch: int, clients: int) -> dict:
    line = orjson.dumps({"service": "bench", "level": "info", "message": "request completed in 12 ms",
                         "trace_id": "abc", "http_status": 200})
    body = b"\n".join(line for _ in range(batch))
    done = 0
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done, failures
        while time.perf_counter() < deadline:
            response = await client.post("/api/ingest", content=body)
            if response.status_code == 200:
                done += 1
            else:
                failures += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                 limits=httpx.Limits(max_connections=clients)) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests_per_s": round(done / elapsed, 1), "records_per_s": round(done * batch / elapsed),
            "batch": batch, "clients": clients, "failed_requests": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per filter")
    parser.add_argument("--ingest-seconds", type=float, default=10.0)
    parser.add_argument("--ingest-batch", type=int, default=100, help="records per ingest request")
    parser.add_argument("--ingest-clients", type=int, default=8)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the data here (default: a temp dir)")
    parser.add_argument("--time-projection", action="store_true",
                        help="CLICKHOUSE_TIME_PROJECTION=true: a copy of `logs` ordered by time (docs/api.md)")
    parser.add_argument("--writing", type=int, default=0, metavar="LOGS_PER_S",
                        help="meanwhile insert this many logs a second into the same ClickHouse from the "
                             "gateway's process, as ingest does under `logpipe run all`")
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--read-token", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ingest-token", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sample", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.client:
        queries = asyncio.run(time_queries(args.client, args.read_token, json.loads(args.sample), args.requests))
        ingest = asyncio.run(time_ingest(args.client, args.ingest_token, args.ingest_seconds, args.ingest_batch,
                                         args.ingest_clients))
        print(json.dumps({"queries": queries, "ingest": ingest}))
        return

    from logpipe.core.broker import EmbeddedBroker, free_port
    from logpipe.core.topics import Topics, ensure_topics
    from logpipe.gateway.app import create_app
    from logpipe.gateway.auth import create_token, open_engine
    from logpipe.gateway.settings import Settings
    from logpipe.stores.clickhouse import ClickHouseStore

    # ignore_cleanup_errors: the in-process ClickHouse may still be merging in the directory.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as temp, EmbeddedBroker(port=free_port()) as broker:
        data_dir = args.data_dir or Path(temp)
        database = "bench_projection" if args.time_projection else "bench"
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, data_dir=data_dir,
                            clickhouse_database=database, port=free_port(), max_records_per_request=10_000,
                            clickhouse_time_projection=args.time_projection,
                            # Throughput is measured here, not the rate limits (docs/api.md).
                            rate_limit_ingest_per_s=0, rate_limit_anonymous_per_s=0)
        store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        store.apply_schema(settings.log_ttl_days, settings.clickhouse_time_projection)
        existing = store.query(f"SELECT count() FROM {store.table('logs')}")[0][0]
        fill_seconds = fill(store, args.rows - existing) if existing < args.rows else 0.0
        asyncio.run(ensure_topics(broker.bootstrap_servers, Topics(settings.topic_prefix)))
        engine = open_engine(settings)
        reader = create_token(engine, "bench-read", ["read"]).token
        shipper = create_token(engine, "bench-ingest", ["ingest"]).token
        sample = store.query_dicts(f"SELECT trace_id, pattern_id FROM {store.table('logs')} "
                                   "WHERE level = 'ERROR' ORDER BY timestamp DESC LIMIT 1")[0]
        writer = Writer(ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database), args.writing)
        with Server(create_app(settings), settings.port) as server:
            if args.writing:
                writer.start()
            # The timing client runs in its own process: sharing the server's interpreter
            # (and its GIL) would add the client's own work to every measured latency.
            client = subprocess.run(
                [sys.executable, __file__, "--client", f"http://127.0.0.1:{server.port}", "--read-token", reader,
                 "--ingest-token", shipper, "--sample", json.dumps({k: int(v) if k == "pattern_id" else v
                                                                     for k, v in sample.items()}),
                 "--requests", str(args.requests), "--ingest-seconds", str(args.ingest_seconds),
                 "--ingest-batch", str(args.ingest_batch), "--ingest-clients", str(args.ingest_clients)],
                capture_output=True, text=True, check=False)
            if client.returncode != 0:
                raise SystemExit(f"timing client failed: {client.stderr[-2000:]}")
            measured = json.loads(client.stdout.strip().splitlines()[-1])
            queries, ingest = measured["queries"], measured["ingest"]
            if args.writing:
                writer.stop.set()
                writer.join()
                # A mutation, not a lightweight DELETE: that would leave a row mask on the parts, and
                # a plain count() of a later run would read it instead of the parts' metadata.
                for table in ("logs", "logs_hourly"):  # the hourly counts follow inserts, not deletes
                    store.command(f"ALTER TABLE {store.table(table)} DELETE WHERE pipeline = '{WRITER_PIPELINE}' "
                                  "SETTINGS mutations_sync = 2")
        rows = store.query(f"SELECT count() FROM {store.table('logs')}")[0][0]
    result = {
        "bench": "gateway_query", "rows": int(rows), "fill_seconds": round(fill_seconds, 1),
        "time_projection": args.time_projection, "writing_logs_per_s": args.writing,
        "written_meanwhile": writer.written,
        "logs_p50_ms": queries["p50_ms"], "logs_p95_ms": queries["p95_ms"], "logs_mean_ms": queries["mean_ms"],
        "target_p95_ms": 50, "meets_target": queries["p95_ms"] <= 50,
        "cases": queries["cases"],
        "ingest_requests_per_s": ingest["requests_per_s"], "ingest_records_per_s": ingest["records_per_s"],
        "ingest": ingest,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
