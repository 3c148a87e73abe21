"""Dashboard speed: navigation to Explore's first table rows and drawn histogram, beside the API.

    .venv/bin/python bench/dashboard.py [--logs 10000000] [--loads 30] [--hours 24] [--data-dir DIR]

Stores `--logs` generated logs (vectorised numpy/pyarrow columns, through
ClickHouseStore.insert_arrow) in an embedded ClickHouse (chdb), starts the real gateway
(uvicorn, serving the built dashboard from services/logpipe/gateway/static) with a read token,
and loads /explore `--loads` times in Debian's Chromium driven by playwright-core
(bench/dashboard_browser.mjs). The page marks `logpipe:first-rows` and
`logpipe:histogram-drawn`; each load reports them in ms since navigation start, with when the
browser had the /api/logs and /api/logs/histogram answers. The same requests the page sent
are then timed from Python (a separate process, so the client's work is not the server's),
one at a time, and inside the page's whole burst of API requests sent at once.

Prints one JSON line: p50/p95 of first rows and histogram drawn, of the API as the page saw
it and as Python saw it, of the page's own cost after the answer (`first_rows_after_api_ms`,
goal <= 150 ms), and the ratio of page time to API time. The dashboard must be built first:
`cd frontend && npm ci && npm run build`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query import Server, percentile  # noqa: E402 - bench/ is not a package

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ["checkout", "payments", "cart", "search", "auth", "inventory", "shipping", "email", "gateway",
            "recommendations", "catalog", "orders", "billing", "notifications", "profile", "reviews", "ads",
            "currency", "fraud", "analytics"]
TEMPLATES = ["request completed in {n} ms", "user {n} logged in", "cache miss for key session:{n}",
             "payment declined for order {n}: insufficient funds", "database connection timeout after {n} ms",
             "retrying upstream call attempt {n}", "GET /api/products/{n} 200", "order {n} shipped",
             "failed to reserve stock for sku {n}", "slow query took {n} ms", "token refreshed for client {n}",
             "circuit breaker open for dependency {n}"]
LEVELS = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
LEVEL_WEIGHTS = [0.15, 0.70, 0.09, 0.058, 0.002]
CHUNK = 1_000_000
GOAL_AFTER_API_MS = 150


def log_batch(rng: np.random.Generator, first: int, count: int, start_ms: int, end_ms: int) -> pa.Table:
    """`count` logs spread at random over [start_ms, end_ms), record ids numbered from `first`."""
    template = rng.integers(0, len(TEMPLATES), count)
    numbers = pa.array(rng.integers(0, 100_000, count)).cast(pa.string())
    heads = pa.array([t.split("{n}")[0] for t in TEMPLATES]).take(pa.array(template))
    tails = pa.array([t.split("{n}")[1] for t in TEMPLATES]).take(pa.array(template))
    return pa.table({
        "timestamp": pa.array(rng.integers(start_ms, end_ms, count), pa.timestamp("ms", tz="UTC")),
        "service": pa.array(SERVICES).take(pa.array(rng.integers(0, len(SERVICES), count))),
        "level": pa.array(LEVELS).take(pa.array(rng.choice(len(LEVELS), count, p=LEVEL_WEIGHTS))),
        "message": pc.binary_join_element_wise(heads, numbers, tails, ""),
        "trace_id": pa.array(rng.integers(0, 2**62, count)).cast(pa.string()),
        "record_id": pa.array(np.arange(first, first + count)).cast(pa.string()),
        "pattern_id": pa.array(template.astype(np.uint64) + 1),
    })


def fill(store, logs: int, hours: float, seed: int = 7) -> float:
    """`logs` logs over the last `hours`, newest now; returns the seconds it took."""
    started = time.perf_counter()
    end_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    start_ms = end_ms - int(hours * 3_600_000)
    rng = np.random.default_rng(seed)
    for first in range(0, logs, CHUNK):
        store.insert_arrow("logs", log_batch(rng, first, min(CHUNK, logs - first), start_ms, end_ms))
    store.insert_rows("patterns", [[index + 1, template.replace("{n}", "<*>")] for index, template in enumerate(TEMPLATES)],
                      ["pattern_id", "template"])
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 0.5), 1), "p95_ms": round(percentile(values, 0.95), 1),
            "mean_ms": round(statistics.fmean(values), 1)}


async def time_requests(urls: list[str], together: list[str], token: str, repeats: int) -> dict[str, dict]:
    """`alone`: each of `urls` `repeats` times, one at a time. `together`: every API request of
    a page load sent at once, as the page sends them, `repeats` times; the time of each of `urls`."""
    import httpx

    alone: dict[str, list[float]] = {}
    concurrent: dict[str, list[float]] = {}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        async def timed(url: str) -> tuple[str, float]:
            started = time.perf_counter()
            response = await client.get(url)
            response.raise_for_status()
            return url, (time.perf_counter() - started) * 1000

        for url in urls:
            for _ in range(repeats):
                alone.setdefault(httpx.URL(url).path, []).append((await timed(url))[1])
        for _ in range(repeats):
            for url, elapsed in await asyncio.gather(*(timed(url) for url in together)):
                if url in urls:
                    concurrent.setdefault(httpx.URL(url).path, []).append(elapsed)
    return {"alone": alone, "together": concurrent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=10_000_000)
    parser.add_argument("--loads", type=int, default=30, help="page loads of /explore")
    parser.add_argument("--hours", type=float, default=24.0, help="the logs are spread over this many hours")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the data here (default: a temp dir)")
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--token", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--urls", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.client:
        urls = json.loads(args.urls)
        print(json.dumps(asyncio.run(time_requests(urls["measured"], urls["page"], args.token, args.loads))))
        return

    from logpipe.core.broker import EmbeddedBroker, free_port
    from logpipe.core.topics import Topics, ensure_topics
    from logpipe.gateway.app import create_app
    from logpipe.gateway.auth import create_token, open_engine
    from logpipe.gateway.settings import Settings
    from logpipe.stores.clickhouse import ClickHouseStore

    static = ROOT / "services" / "logpipe" / "gateway" / "static"
    if not (static / "index.html").is_file():
        raise SystemExit(f"no dashboard build in {static}: cd frontend && npm ci && npm run build")
    # ignore_cleanup_errors: the in-process ClickHouse may still be merging in the directory.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as temp, EmbeddedBroker(port=free_port()) as broker:
        data_dir = args.data_dir or Path(temp)
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, data_dir=data_dir,
                            clickhouse_database="bench_dashboard", port=free_port(), frontend_dir=static,
                            # Page loads are measured here, not the rate limits (docs/api.md).
                            rate_limit_anonymous_per_s=0)
        store = ClickHouseStore(settings.clickhouse_dsn, settings.clickhouse_database)
        store.apply_schema(settings.log_ttl_days, settings.clickhouse_time_projection)
        existing = int(store.query(f"SELECT count() FROM {store.table('logs')}")[0][0])
        fill_seconds = fill(store, args.logs - existing, args.hours) if existing < args.logs else 0.0
        stored = int(store.query(f"SELECT count() FROM {store.table('logs')}")[0][0])
        asyncio.run(ensure_topics(broker.bootstrap_servers, Topics(settings.topic_prefix)))
        token = create_token(open_engine(settings), "bench-dashboard", ["read"]).token
        with Server(create_app(settings), settings.port) as server:
            url = f"http://127.0.0.1:{server.port}"
            browser = subprocess.run(["node", str(ROOT / "bench" / "dashboard_browser.mjs"), url, token,
                                      str(args.loads)], capture_output=True, text=True, check=False, timeout=1800)
            if browser.returncode != 0:
                raise SystemExit(f"the browser run failed: {browser.stderr[-3000:]}")
            loads = [json.loads(line) for line in browser.stdout.splitlines() if line.startswith("{")]
            # The requests of the last load, as the page sent them, timed from another process.
            urls = sorted(set(loads[-1]["api_urls"]))
            page_urls = sorted(set(urls) | set(loads[-1]["other_requests"]))
            client = subprocess.run([sys.executable, __file__, "--client", url, "--token", token,
                                     "--urls", json.dumps({"measured": page_urls, "page": page_urls}),
                                     "--loads", str(args.loads)],
                                    capture_output=True, text=True, check=False, timeout=1800)
            if client.returncode != 0:
                raise SystemExit(f"the timing client failed: {client.stderr[-3000:]}")
            python_api = json.loads(client.stdout.strip().splitlines()[-1])

    first_rows = [load["first_rows_ms"] for load in loads]
    drawn = [load["histogram_drawn_ms"] for load in loads]
    logs_answered = [load["logs_api"]["end"] for load in loads]
    histogram_answered = [load["histogram_api"]["end"] for load in loads]
    after_logs = [load["first_rows_ms"] - load["logs_api"]["end"] for load in loads]
    after_histogram = [load["histogram_drawn_ms"] - load["histogram_api"]["end"] for load in loads]
    logs_python = summary(python_api["alone"]["/api/logs"])
    histogram_python = summary(python_api["alone"]["/api/logs/histogram"])
    result = {
        "bench": "dashboard_explore", "logs": stored, "hours": args.hours, "fill_seconds": round(fill_seconds, 1),
        "loads": len(loads), "browser": "Debian chromium (headless, playwright-core)",
        "first_rows": summary(first_rows), "histogram_drawn": summary(drawn),
        "page_logs_answer": summary(logs_answered), "page_histogram_answer": summary(histogram_answered),
        "page_logs_request": summary([load["logs_api"]["duration"] for load in loads]),
        "page_histogram_request": summary([load["histogram_api"]["duration"] for load in loads]),
        "first_rows_after_api_ms": summary(after_logs), "histogram_drawn_after_api_ms": summary(after_histogram),
        "python_logs_api": logs_python, "python_histogram_api": histogram_python,
        # The page's whole burst of API requests at once from Python: what the server makes of it.
        "python_logs_api_with_page_burst": summary(python_api["together"]["/api/logs"]),
        "python_histogram_api_with_page_burst": summary(python_api["together"]["/api/logs/histogram"]),
        # The baseline: the same requests from Python; the page's time over it is its own cost.
        "first_rows_to_api_ratio": round(percentile(first_rows, 0.5) / max(logs_python["p50_ms"], 0.1), 2),
        "histogram_to_api_ratio": round(percentile(drawn, 0.5) / max(histogram_python["p50_ms"], 0.1), 2),
        "goal_first_rows_after_api_ms": GOAL_AFTER_API_MS,
        "meets_goal": percentile(after_logs, 0.95) <= GOAL_AFTER_API_MS,
        "python_alone_by_path": {path: summary(values) for path, values in sorted(python_api["alone"].items())},
        "python_with_page_burst_by_path": {path: summary(values)
                                           for path, values in sorted(python_api["together"].items())},
        "api_urls": page_urls,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
