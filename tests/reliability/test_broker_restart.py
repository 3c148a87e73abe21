"""The broker stopped and restarted on the same port mid-stream, with the generator, the
gateway's ingest routes and ingest running: the producers recover by themselves; the routes
answer 503 with Retry-After while the broker is away and 2xx only for logs the broker
acknowledged.

Run twice, with each of Tansu's storage engines this binary has (`postgres://` and `sqlite://`
are not compiled in):
- memory: a restart loses the topics, their records and the group offsets. The broker comes
  back with its topics, as a persistent broker would: it listens on a port of its own until they
  are created, then the old port forwards to it (`Forwarder`; the clients follow its metadata).
  Creating them while the clients already produce corrupts the memory broker's log (see
  `Forwarder`);
- s3: the log lives in an S3 bucket (moto's S3 server, a process of its own) and outlives the
  broker: topics, records and committed offsets are there after the restart, on the same port.
The test checks, by record id:
- everything the generator and the gateway acknowledged after the restart is in the restarted
  broker's log (read back from it), and ingest, by itself, consumes and stores all of it within
  a deadline (memory: its consumer rejoins the group the broker forgot and reads the new log
  from 0, below the offsets ClickHouse already holds; s3: it goes on from its committed offsets);
- of what was acknowledged before the stop: s3, all of it is stored, what ingest had not yet
  consumed at the stop included; memory, exactly what ingest had consumed is stored, once, and
  the rest (acknowledged, not yet consumed) was in the memory broker's log and is gone with it.
  Those counts are printed, not hidden;
- nothing is stored that no producer had acknowledged (the refused OTLP and Loki requests carry
  no record id, so a late copy of them would show), and no log is stored twice, in ClickHouse
  or through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import orjson
import pytest

from logpipe.core.broker import EmbeddedBroker, free_port, port_in_use
from logpipe.core.kafka import new_producer
from logpipe.core.topics import Topics, ensure_topics
from logpipe.generator import handlers as generator_handlers
from logpipe.generator.handlers import Generator
from logpipe.generator.settings import Settings as GeneratorSettings
from reliability_support import read_topic
from support import running_ingest, wait_for, wait_until

PARTITIONS = 4


@contextlib.contextmanager
def s3_bucket():
    """A fresh bucket on moto's S3 server (its own process) and the environment Tansu reads it with."""
    import boto3

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_in_use(port) or server.poll() is not None, timeout=60,
                   message="moto's S3 server did not listen")
        assert server.poll() is None, f"moto's S3 server exited with {server.returncode}"
        # moto takes any credentials; random ones keep a real account's from being used by accident.
        environment = {"AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": secrets.token_hex(8),
                       "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16)}
        bucket = f"tansu-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=environment["AWS_ENDPOINT"], region_name="us-east-1",
                     aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
        yield f"s3://{bucket}/", environment
    finally:
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def storage(engine: str):
    if engine == "memory":
        yield "memory://tansu/", {}
    else:
        with s3_bucket() as found:
            yield found


class Forwarder:
    """127.0.0.1:port forwarded byte for byte to 127.0.0.1:target, on a thread and loop of its own.

    Why the restarted broker hides behind it until its topics exist: the memory Tansu accepts a
    produce request for a topic it does not have (a producer still holding the old broker's
    metadata), and a CreateTopics for that name moments later answers success and numbers the
    partition from 0 again under the records already taken. A run here had 100 records acked at
    offsets 0-99 of a partition, then later batches acked from offset 10: a consumer reading by
    offset read the first batch and never the 170 records behind the collision. Kafka refuses
    such a request (UNKNOWN_TOPIC_OR_PARTITION) and keeps its topics over a restart."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.error: OSError | None = None
        self.connections: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self._run, name="forwarder", daemon=True)

    def start(self) -> "Forwarder":
        self.thread.start()
        assert self.started.wait(10), "the forwarder did not start"
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._forward, "127.0.0.1", self.port))
        except OSError as exc:
            self.error = exc
            return
        finally:
            self.started.set()
        self.loop.run_forever()
        self.loop.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.connections |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(1 << 16):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def _shutdown(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self.error is None and self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def otlp_ids(body: bytes) -> set[str]:
    from logpipe.gateway.protocols import otlp

    return {r["record_id"] for r in otlp.decode(body, "application/json", datetime.now(timezone.utc),
                                                max_records=100, max_record_bytes=1 << 20)}


def loki_ids(body: bytes) -> set[str]:
    from logpipe.gateway.protocols import loki

    return {r["record_id"] for r in loki.decode(body, "application/json", None, datetime.now(timezone.utc),
                                                max_body_bytes=1 << 20, max_records=100, max_record_bytes=1 << 20)}


class Ledger:
    """Record ids by the moment their producer heard the broker's acknowledgement."""

    def __init__(self) -> None:
        self.before_stop: set[str] = set()
        self.after_restart: set[str] = set()
        self.phase = "before"
        self.refused_while_away = 0
        self.retry_after: set[str] = set()
        # The generator's sends that failed (it does not resend them): a broker stopped while
        # writing a batch may keep it without ever answering, so these may be stored.
        self.unanswered: set[str] = set()

    def acknowledged(self, ids) -> None:
        # Noted when the producer's await returns: while the broker is away only the old broker
        # can have acknowledged (stop() blocks the loop, so nothing resumes during it), and the
        # phase turns "after" as soon as the new broker runs, before anything awaits.
        (self.before_stop if self.phase in ("before", "away") else self.after_restart).update(ids)


async def ship(client: httpx.AsyncClient, token: str, ledger: Ledger, stop: asyncio.Event, now) -> None:
    """A shipper posting JSON lines (10 logs a request) and retrying a refused request, as
    Fluent Bit or Vector do: the same logs, after Retry-After (capped for the test)."""
    index = 0
    while not stop.is_set():
        ids = [f"http-{uuid.uuid4()}" for _ in range(10)]
        body = b"\n".join(orjson.dumps({"timestamp": now().isoformat(), "service": "shipper", "level": "INFO",
                                        "message": f"shipped line {index + i}", "record_id": rid})
                          for i, rid in enumerate(ids))
        index += 10
        while True:
            response = await client.post("/api/ingest", content=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
            if response.status_code == 200:
                assert response.json() == {"accepted": 10}
                ledger.acknowledged(ids)
                break
            assert response.status_code == 503, response.text
            ledger.retry_after.add(response.headers.get("Retry-After", "missing"))
            if ledger.phase == "away":
                ledger.refused_while_away += 1
            await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 0.5))
        await asyncio.sleep(0.1)  # the shipper's own pace: 100 logs a second


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ["memory", "s3"])
async def test_broker_restarted_mid_stream_everyone_recovers_and_nothing_acknowledged_is_lost(
        engine, clickhouse, tmp_path, monkeypatch):
    with storage(engine) as (storage_engine, environment):
        await restart_mid_stream(engine == "s3", storage_engine, environment, clickhouse, tmp_path, monkeypatch)


async def restart_mid_stream(persistent: bool, storage_engine: str, environment: dict[str, str],
                             clickhouse, tmp_path, monkeypatch) -> None:
    from logpipe.gateway.app import create_app
    from logpipe.gateway.auth import create_token, open_engine
    from logpipe.gateway.settings import Settings as GatewaySettings

    port = free_port()
    broker = EmbeddedBroker(port=port, storage_engine=storage_engine, environment=environment).start()
    bootstrap = broker.bootstrap_servers
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    topics = Topics(prefix)
    await ensure_topics(bootstrap, topics, partitions=PARTITIONS)
    ledger = Ledger()
    forwarder: Forwarder | None = None
    refused_ids: set[str] = set()  # the refused OTLP and Loki logs' ids (the gateway derives them)

    original_send = generator_handlers.send_values

    async def send_and_note(producer, topic, values, *args, **kwargs):
        ids = [orjson.loads(v)["record_id"] for v in values]
        try:
            await original_send(producer, topic, values, *args, **kwargs)
        except Exception:
            ledger.unanswered.update(ids)
            raise
        ledger.acknowledged(ids)

    monkeypatch.setattr(generator_handlers, "send_values", send_and_note)
    gateway_settings = GatewaySettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, clickhouse_url=clickhouse.dsn,
        clickhouse_database=clickhouse.database, data_dir=tmp_path, frontend_dir=tmp_path / "none",
        embedder_url=f"http://127.0.0.1:{free_port()}", analyzer_url=f"http://127.0.0.1:{free_port()}",
        produce_timeout_s=3)
    token = create_token(open_engine(gateway_settings), "shipper", ["ingest", "read"]).token
    gateway = create_app(gateway_settings)
    window_start = datetime.now(timezone.utc) - timedelta(minutes=1)
    stop_shipping = asyncio.Event()
    # A send the broker never answers fails after 5 s (the default 30 s only makes the test slower).
    producer = new_producer(bootstrap, request_timeout_ms=5000)
    await producer.start()
    generator = Generator(GeneratorSettings(rate_per_second=400, seed=7, incidents="none"), producer, topics.raw_logs)
    try:
        async with running_ingest(bootstrap, prefix, clickhouse) as ingest_app, \
                gateway.router.lifespan_context(gateway), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as client:
            ingestor = ingest_app.state.ingestor
            generator.start()
            shipper = asyncio.create_task(ship(client, token, ledger, stop_shipping,
                                               lambda: datetime.now(timezone.utc)))
            await wait_for(lambda: ingestor.stats.written >= 2_000, timeout=60, message=lambda: ingestor.stats_view())
            # Ingest falls behind before the stop: its inserts wait (fetching pauses once its
            # batches in flight are full), so logs acknowledged meanwhile are in the broker's log,
            # not yet consumed, when it stops. They are let through once the broker is back.
            inserts_held = asyncio.Event()
            original_insert = ingestor.store.ainsert_arrow

            async def held_insert(*args, **kwargs):
                await inserts_held.wait()
                return await original_insert(*args, **kwargs)

            monkeypatch.setattr(ingestor.store, "ainsert_arrow", held_insert)
            await wait_for(lambda: ingestor.consumer.stats.paused, timeout=60, message=lambda: ingestor.stats_view())
            acknowledged_at_pause = len(ledger.before_stop)
            await wait_for(lambda: len(ledger.before_stop) >= acknowledged_at_pause + 500, timeout=60,
                           message=lambda: f"{len(ledger.before_stop) - acknowledged_at_pause} acknowledged since")

            # -- the broker goes away mid-stream --------------------------------------------------
            broker.stop()
            ledger.phase = "away"
            stopped_at = time.monotonic()
            errors_before = generator.stats.errors
            await wait_for(lambda: ledger.refused_while_away >= 3 and generator.stats.errors > errors_before,
                           timeout=60, message=lambda: f"refused {ledger.refused_while_away}, {generator.stats}")
            # The other ingest routes answer the same way while the broker is away.
            stamp = str(time.time_ns())
            otlp = {"resourceLogs": [{"resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "otlp-shipper"}}]},
                "scopeLogs": [{"logRecords": [{"timeUnixNano": stamp, "severityText": "ERROR",
                                               "body": {"stringValue": "sent while the broker is away"}}]}]}]}
            loki = {"streams": [{"stream": {"service": "loki-shipper"},
                                 "values": [[stamp, "sent while the broker is away"]]}]}
            for path, body, decode in (("/v1/logs", otlp, otlp_ids), ("/loki/api/v1/push", loki, loki_ids)):
                refused_ids |= decode(orjson.dumps(body))
                refused = await client.post(path, content=orjson.dumps(body), headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                assert refused.status_code == 503, (path, refused.status_code, refused.text)
                assert refused.headers["Retry-After"] == "5", path
            consumed_before_stop = ingestor.consumer.stats.consumed
            assert ledger.retry_after == {"5"}
            assert not shipper.done()

            if persistent:
                # -- back on the same port with the same storage: topics, log and offsets kept ----
                broker = EmbeddedBroker(port=port, storage_engine=storage_engine, environment=environment).start()
                ledger.phase = "after"
                assert await ensure_topics(bootstrap, topics, partitions=PARTITIONS) == []  # all there
            else:
                # -- back (empty: memory storage) with its topics, reached through the same port --
                broker = EmbeddedBroker(port=free_port()).start()
                ledger.phase = "after"
                await ensure_topics(broker.bootstrap_servers, topics, partitions=PARTITIONS)
                forwarder = Forwarder(port, broker.port).start()
            inserts_held.set()
            away_s = time.monotonic() - stopped_at
            produced_at_restart = generator.stats.produced
            await wait_for(lambda: len(ledger.after_restart) >= 2_000
                           and generator.stats.produced > produced_at_restart + 1_000, timeout=90,
                           message=lambda: f"after the restart: {len(ledger.after_restart)} acknowledged, "
                                           f"{generator.stats}")
            await generator.stop()
            stop_shipping.set()
            await asyncio.wait_for(shipper, 30)

            acknowledged_after = set(ledger.after_restart)
            # The s3 log starts with what was there before the stop, and its fetches (moto's S3 in
            # Python) can pause for seconds under load: read on until it is quiet for longer.
            new_log = await asyncio.to_thread(read_topic, bootstrap, topics.raw_logs, PARTITIONS,
                                              idle_s=10 if persistent else 1.5, timeout_s=90)
            # Acknowledged after the restart means in the restarted broker's log.
            assert acknowledged_after <= new_log.keys(), len(acknowledged_after - new_log.keys())
            # Ingest, left to itself, consumes and stores everything acknowledged after the restart
            # (and, with a persistent broker, what was acknowledged before the stop as well).
            logs_table = clickhouse.table("logs")
            expected = acknowledged_after | (ledger.before_stop if persistent else set())

            def not_stored_yet() -> set[str]:
                rows = clickhouse.query(f"SELECT record_id FROM {logs_table}")
                return expected - {row[0] for row in rows}

            def where(missing: set[str]) -> str:
                places = sorted(new_log.get(rid, (-1, -1)) for rid in missing)
                return (f"{len(missing)} acknowledged logs not stored, at (partition, offset) "
                        f"{places[:20]}; ingest: {ingestor.stats_view()}")

            await wait_for(lambda: not not_stored_yet(), timeout=60, interval=1.0,
                           message=lambda: where(not_stored_yet()))
            consumed_after_restart = ingestor.consumer.stats.consumed - consumed_before_stop

        def stored_ids() -> set[str]:
            return {row[0] for row in clickhouse.query(f"SELECT record_id FROM {clickhouse.table('logs')}")}

        rows, distinct = clickhouse.query(f"SELECT count(), uniqExact(record_id) FROM {clickhouse.table('logs')}")[0]
        stored = stored_ids()
        before = ledger.before_stop
        report = {"storage": storage_engine.split(":")[0], "away_s": round(away_s, 1),
                  "acknowledged_before_stop": len(before), "consumed_by_ingest_before_stop": consumed_before_stop,
                  "stored_of_before": len(before & stored), "not_stored_of_before": len(before - stored),
                  "acknowledged_after_restart": len(acknowledged_after),
                  "in_the_restarted_log": len(acknowledged_after & new_log.keys()),
                  "ingest_consumed_after_restart": consumed_after_restart,
                  "stored_of_after": len(acknowledged_after & stored), "rows": rows, "distinct": distinct,
                  "refused_while_away": ledger.refused_while_away,
                  "refused_otlp_loki_stored": len(stored & refused_ids),
                  "generator_unanswered": len(ledger.unanswered),
                  "stored_of_unanswered": len(stored & ledger.unanswered - before - acknowledged_after),
                  "generator": generator.stats.__dict__}
        print(f"broker restart: {report}", flush=True)
        assert rows == distinct == len(stored), report  # nothing stored twice
        # Nothing stored that was not acknowledged: neither the refused OTLP and Loki logs
        # (a late copy would show up here under its content-derived id) nor anything else, but for
        # generator batches the stopping broker took without answering.
        assert not stored & refused_ids, report
        assert stored <= before | acknowledged_after | ledger.unanswered, report
        if persistent:
            # Acknowledged before the stop means delivered after it, consumed by then or not.
            assert before <= stored, report
        else:
            # What ingest consumed before the stop is stored; only what it never read is gone.
            assert len((before | ledger.unanswered) & stored) == consumed_before_stop, report
        # The user's view: the API counts each stored log once.
        async with gateway.router.lifespan_context(gateway), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as client:
            page = await client.get("/api/logs", params={"start": window_start.isoformat(), "limit": 1},
                                    headers={"Authorization": f"Bearer {token}"})
            assert page.status_code == 200, page.text
            assert page.json()["total"] == rows, (page.json()["total"], report)
    finally:
        stop_shipping.set()
        with contextlib.suppress(Exception):
            await generator.stop()
        await producer.stop()
        broker.stop()
        if forwarder is not None:
            forwarder.stop()
