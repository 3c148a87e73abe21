"""The data directory fills up while ingest writes: a clear error, nothing dead-lettered,
nothing committed for what was not written, no corruption, and recovery once space returns.

The data directory is a small size-limited filesystem (tmpfs, or a loop-mounted ext4 image where
tmpfs cannot be mounted); ingest runs as `logpipe run ingest` in a process of its own (chdb
holds one data directory per process), and a filler file takes the last free byte.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from logpipe.core.broker import free_port
from logpipe.core.topics import Topics, ensure_topics
from logpipe.generator.service import LogFactory, encode
from reliability.outage_support import committed_total, read_values
from support import produce, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SIZE_MB = 96
# How long the disk stays full (the invariants are checked about once a second meanwhile).
FULL_SECONDS = 15.0


def _mount_small_filesystem(target: Path, scratch: Path) -> tuple[str, list[list[str]]]:
    """Mount a SIZE_MB filesystem on `target`: how, and the commands that undo it. Skips (with
    what failed) only where neither tmpfs nor a loop-mounted ext4 image can be mounted."""
    target.mkdir()
    problems = []
    tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0755", "tmpfs", str(target)],
                           capture_output=True, text=True)
    if tmpfs.returncode == 0:
        return "tmpfs", [["umount", "-l", str(target)]]
    problems.append(f"mount -t tmpfs: {tmpfs.stderr.strip() or tmpfs.returncode}")
    image = scratch / "data.img"
    mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    made = subprocess.run(["truncate", "-s", f"{SIZE_MB}M", str(image)], capture_output=True, text=True)
    if made.returncode == 0:
        made = subprocess.run([mkfs, "-q", "-F", str(image)], capture_output=True, text=True)
    if made.returncode == 0:
        loop = subprocess.run(["mount", "-o", "loop", str(image), str(target)], capture_output=True, text=True)
        if loop.returncode == 0:
            return "loop-mounted ext4", [["umount", "-l", str(target)]]
        problems.append(f"mount -o loop: {loop.stderr.strip() or loop.returncode}")
    else:
        problems.append(f"mkfs.ext4: {made.stderr.strip() or made.returncode}")
    pytest.skip("cannot mount a size-limited data directory here (as uid %d): %s" % (os.geteuid(), "; ".join(problems)))


def _fill(directory: Path) -> Path:
    """A file that takes every free byte of `directory`'s filesystem."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as out:
        for size in (1 << 20, 1 << 12, 1):
            block = chunk[:size]
            while True:
                try:
                    out.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def _query(env: dict, sql: str) -> str:
    """Run `sql` on the data directory's chdb in a process of its own (ingest stopped)."""
    code = ("import sys\nfrom logpipe.ingest.settings import Settings\nfrom logpipe.stores.clickhouse import ClickHouseStore\n"
            "s = Settings(); store = ClickHouseStore(s.clickhouse_dsn, s.clickhouse_database)\n"
            "for row in store.query(sys.argv[1].replace('{logs}', store.table('logs'))): print(*row, sep='\\t')\n")
    done = subprocess.run([sys.executable, "-c", code, sql], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


async def test_a_full_data_directory_pauses_ingest_then_it_recovers_with_nothing_lost(kafka_bootstrap, tmp_path):
    data = tmp_path / "data"
    how, undo = _mount_small_filesystem(data, tmp_path)
    try:
        await _fill_and_recover(kafka_bootstrap, tmp_path, data, how)
    finally:
        for command in undo:
            subprocess.run(command, capture_output=True)


async def _fill_and_recover(kafka_bootstrap: str, tmp_path: Path, data: Path, how: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    topics = Topics(prefix)
    await ensure_topics(kafka_bootstrap, topics, partitions=2)
    port = free_port()
    group = f"disk-{prefix}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOPIC_PREFIX": prefix,
           "LOGPIPE_DATA_DIR": str(data), "INGEST_PORT": str(port), "INGEST_GROUP_ID": group,
           "INGEST_BATCH_SIZE": "500", "INGEST_BATCH_TIMEOUT_SECONDS": "0.5", "INGEST_SESSION_TIMEOUT_MS": "2000",
           "INGEST_HEARTBEAT_INTERVAL_MS": "500", "INGEST_RETRY_BASE_SECONDS": "0.2",
           "INGEST_RETRY_MAX_SECONDS": "1", "LOG_LEVEL": "INFO",
           # Less memory for decompressed blocks: the small filesystem is the point, not RAM.
           "CLICKHOUSE_UNCOMPRESSED_CACHE_MB": "0"}
    log_path = tmp_path / "ingest.log"
    factory = LogFactory(error_rate=0.2, seed=21)
    first, second = factory.batch(1500), factory.batch(1500)
    ingest = None
    filler = None
    try:
        with open(log_path, "w") as log_file:
            ingest = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "run", "ingest"], env=env,
                                      stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            async def stats() -> dict:
                try:
                    return (await client.get("/stats")).json()
                except httpx.HTTPError:
                    assert ingest.poll() is None, log_path.read_text()[-3000:]
                    return {}

            await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in first])
            await wait_for(lambda: _written(stats, len(first)), timeout=120, message=lambda: log_path.read_text()[-2000:])

            filler = _fill(data)
            assert shutil.disk_usage(data).free < 64 << 10
            started = time.monotonic()
            await produce(kafka_bootstrap, topics.raw_logs, [encode(r) for r in second])

            async def circuit_open() -> dict | None:
                body = (await client.get("/health")).json()
                return body if body.get("circuits", {}).get("clickhouse") == "open" else None

            body = await wait_for(circuit_open, timeout=60, message=lambda: log_path.read_text()[-3000:])
            # The reason says what is wrong, in /health and in ingest's log.
            reason = body["reasons"]["circuit:clickhouse"]
            space = re.compile(r"space|ENOSPC|NOT_ENOUGH_SPACE", re.IGNORECASE)
            assert space.search(reason), reason
            assert body["status"] in ("degraded", "unhealthy")
            assert any("ClickHouse insert failed" in line and space.search(line)
                       for line in log_path.read_text().splitlines()), log_path.read_text()[-3000:]
            # The consumer pauses at its next poll after the circuit opened.
            async def paused() -> bool:
                return (await stats()).get("paused") is True

            await wait_for(paused, timeout=10, message="ingest did not pause")
            # Held, not crashed, for as long as the disk stays full: nothing written, dead-lettered
            # or committed, fetching paused.
            checks = 0
            while time.monotonic() - started < FULL_SECONDS or not checks:
                held = await stats()
                assert held["written"] == len(first) and held["dlq"] == 0 and held["paused"] is True, held
                assert held["circuit"] == "open"
                assert await committed_total(kafka_bootstrap, group, topics.raw_logs) == len(first)
                checks += 1
                await asyncio.sleep(1.0)
            full_for = time.monotonic() - started

            filler.unlink()
            filler = None
            await wait_for(lambda: _written(stats, len(first) + len(second)), timeout=120,
                           message=lambda: log_path.read_text()[-3000:])
            recovered = (await client.get("/health")).json()
            assert recovered["status"] == "healthy" and recovered["circuits"]["clickhouse"] == "closed", recovered

            async def committed_all() -> bool:
                return await committed_total(kafka_bootstrap, group, topics.raw_logs) == len(first) + len(second)

            await wait_for(committed_all, timeout=30)
        # Valid data never reaches the DLQ for want of space.
        assert await read_values(kafka_bootstrap, topics.raw_logs_dlq, 1, timeout_s=2) == []
    finally:
        if ingest is not None and ingest.poll() is None:
            ingest.send_signal(signal.SIGTERM)
            try:
                ingest.wait(timeout=60)
            except subprocess.TimeoutExpired:
                ingest.kill()
                ingest.wait()
        if filler is not None:
            filler.unlink()
    # No corruption: every part checks out and every row reads back, each log once.
    checked = [line.split("\t") for line in _query(env, "CHECK TABLE {logs}").splitlines()]
    assert checked and all(part[1] == "1" for part in checked), checked  # (part, is_passed, message)
    rows, distinct = _query(env, "SELECT count(), uniqExact(record_id) FROM {logs}").split()
    assert int(rows) == int(distinct) == len(first) + len(second)
    ids = set(_query(env, "SELECT record_id FROM {logs}").split())
    assert ids == {r["record_id"] for r in first + second}
    print(f"\nDISK FULL ({how}, {SIZE_MB} MB): full for {full_for:.1f}s ({checks} checks); stored {rows} rows, {distinct} distinct, "
          f"of {len(first) + len(second)} produced; DLQ 0; {len(checked)} parts checked; reason: {reason[:300]}")


async def _written(stats, count: int) -> bool:
    return (await stats()).get("written", 0) >= count
