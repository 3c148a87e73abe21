"""Run in a process of its own by the fault suite (reliability_support.py).

- `run <service>`: `logpipe run <service>` (the process the tests kill with SIGKILL);
- `check --start T --end T [--vectors]`: prints one JSON line with what is stored in the chdb
  directory of LOGPIPE_DATA_DIR: rows and distinct record ids in ClickHouse, and what the
  gateway's API answers a user for [start, end): `/api/logs`' total and the pattern counts of
  `/api/patterns`; with --vectors, the point count of the embedded vector collection and the
  record ids read from its payloads (one per point).
"""

import argparse
import json
import sys


def check(args: argparse.Namespace) -> dict:
    from starlette.testclient import TestClient

    from logpipe.gateway.app import create_app
    from logpipe.gateway.auth import create_token, open_engine
    from logpipe.gateway.settings import Settings

    settings = Settings(frontend_dir="/nonexistent", embedder_url="http://127.0.0.1:9", analyzer_url="http://127.0.0.1:9")
    token = create_token(open_engine(settings), "reliability-check", ["read"]).token
    result: dict = {}
    with TestClient(create_app(settings)) as client:
        store = client.app.state.store
        logs = store.table("logs")
        rows, distinct = store.query(f"SELECT count(), uniqExact(record_id) FROM {logs}")[0]
        result.update(rows=int(rows), distinct_record_ids=int(distinct))
        headers = {"Authorization": f"Bearer {token}"}
        page = client.get("/api/logs", params={"start": args.start, "end": args.end, "limit": 1}, headers=headers)
        page.raise_for_status()
        result["api_logs_total"] = page.json()["total"]
        patterns = client.get("/api/patterns", params={"start": args.start, "end": args.end, "limit": 1000,
                                                       "min_count": 1}, headers=headers)
        patterns.raise_for_status()
        body = patterns.json()
        result["api_patterns_total"] = body["total"]
        result["api_patterns_sum"] = sum(p["count"] for p in body["patterns"]) + body["other_count"]
        result["api_patterns"] = len(body["patterns"])
        if args.vectors:
            # The records ingest forwarded (WARN, ERROR, FATAL by default) and their points.
            forwarded = [row[0] for row in store.query(
                f"SELECT record_id FROM {logs} WHERE level IN ('WARN', 'ERROR', 'FATAL')")]
            result["forwarded"] = len(forwarded)
    if args.vectors:
        from logpipe.core.settings import ServiceSettings
        from logpipe.stores.vectors import open_vector_store

        vectors = open_vector_store("", "log_embeddings", ServiceSettings().data_dir)
        # all-MiniLM-L6-v2's 384 dimensions; True here would mean the vectorizer never made it.
        result["collection_created_by_check"] = vectors.ensure_collection(384)
        result["points"] = vectors.count()
        found = 0
        for index in range(0, len(forwarded), 1000):
            points = vectors.retrieve(forwarded[index:index + 1000])
            found += sum(1 for p in points if p["payload"].get("record_id") in set(forwarded[index:index + 1000]))
        result["forwarded_with_a_point"] = found
        vectors.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("service")
    checker = sub.add_parser("check")
    checker.add_argument("--start", required=True)
    checker.add_argument("--end", required=True)
    checker.add_argument("--vectors", action="store_true")
    args = parser.parse_args()
    if args.command == "run":
        from logpipe.cli import main as cli

        cli(["run", args.service])
        return
    print(json.dumps(check(args)))


if __name__ == "__main__":
    sys.exit(main())
