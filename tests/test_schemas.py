"""`logpipe schema`: topics, ClickHouse tables, the Qdrant collection and SQL tables, by one function."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from logpipe.core.topics import ALL_TOPICS


def run_schema(kafka_bootstrap: str, prefix: str, data_dir, *options: str) -> dict:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOPIC_PREFIX": prefix,
           "LOGPIPE_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-m", "logpipe.cli", "schema", *options], env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_schema_creates_everything_once(kafka_bootstrap, topic_prefix, tmp_path):
    first = run_schema(kafka_bootstrap, topic_prefix, tmp_path)
    assert sorted(first["topics_created"]) == sorted(f"{topic_prefix}{t}" for t in ALL_TOPICS)
    assert first["collection_created"] is True and first["clickhouse"] == "logpipe" and first["sql"] is True
    assert (tmp_path / "clickhouse").is_dir() and (tmp_path / "qdrant").is_dir()
    assert (tmp_path / "logpipe.db").is_file()
    again = run_schema(kafka_bootstrap, topic_prefix, tmp_path, "--reorder-logs")
    assert again["topics_created"] == [] and again["collection_created"] is False
    assert again["logs_rows_reordered"] is None  # made by this version: in its sort key already
