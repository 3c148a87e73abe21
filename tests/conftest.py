"""Fixtures shared by every test: the real embedded broker (Tansu) and real ClickHouse (chdb).

chdb allows one data directory per process, so the whole test session shares one, and each
test gets its own database in it. Tests that need a second process use their own directory.
"""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """A real Tansu broker on a free port for the whole session."""
    from logpipe.core.broker import EmbeddedBroker, free_port

    broker = EmbeddedBroker(port=free_port()).start()
    yield broker.bootstrap_servers
    broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic namespace per test, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}-"


@pytest.fixture
async def topics(kafka_bootstrap, topic_prefix):
    from logpipe.core.topics import Topics, ensure_topics

    names = Topics(topic_prefix)
    await ensure_topics(kafka_bootstrap, names, partitions=4)
    return names


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory) -> str:
    # With the engine setting the services pass by default, so tests run the shipped form.
    return f"chdb://{tmp_path_factory.mktemp('clickhouse')}?uncompressed_cache_size={256 * 1024 * 1024}"


@pytest.fixture
def clickhouse(chdb_dsn):
    """A real (embedded) ClickHouse with the logpipe schema in a database of its own."""
    from logpipe.stores.clickhouse import ClickHouseStore

    store = ClickHouseStore(chdb_dsn, database=f"test_{uuid.uuid4().hex[:12]}")
    store.apply_schema(ttl_days=90)
    yield store
    store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")
    store.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A throwaway real Redis (Debian's redis-server) on a free loopback port, no persistence."""
    import shutil
    import subprocess
    import redis

    from logpipe.core.broker import free_port
    from support import wait_until

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"redis-server exited with {process.returncode} on port {port}")
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, timeout=10, interval=0.05, message=f"redis-server did not start on port {port}")
    except AssertionError:
        process.kill()
        raise
    client.close()
    yield url
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def embedding_backend(tmp_path_factory):
    """The real local embedding model (ONNX Runtime, exported once per session)."""
    from logpipe.ai.embeddings import local_backend

    return local_backend(tmp_path_factory.mktemp("models-data"), prefer="onnx", threads=2)
