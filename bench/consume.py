"""Kafka client libraries compared: each one's fastest plain consume loop over the same topic.

    .venv/bin/python bench/consume.py [--records 500000] [--partitions 4] [--rounds 2]

Fills one topic on an embedded Tansu with generated logs, then, alternating the libraries
round after round, consumes all of them with a fresh consumer group each time: aiokafka's
`getmany` and confluent-kafka's `consume` (a plain synchronous loop), each reading what a
consumer of ours reads of a record (value, topic, partition, offset, timestamp), counting
every record once. Prints one JSON line: records/s per library and round, and the ratio of
the medians (confluent / aiokafka).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid

from logpipe.core.broker import EmbeddedBroker, free_port
from logpipe.core.kafka import new_producer, send_values
from logpipe.core.topics import Topics, ensure_topics
from logpipe.generator.service import LogFactory, encode

FETCH = dict(max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)


async def fill(bootstrap: str, topic: str, records: int, seed: int = 1) -> int:
    """Produce `records` generated logs (a pool of distinct messages, each record with its own id)."""
    factory = LogFactory(error_rate=0.1, seed=seed)
    pool = factory.batch(50_000)
    producer = new_producer(bootstrap, linger_ms=20)
    await producer.start()
    size = 0
    try:
        chunk = 20_000
        for start in range(0, records, chunk):
            values = []
            for i in range(start, min(records, start + chunk)):
                record = dict(pool[i % len(pool)])
                record["record_id"] = str(uuid.UUID(int=i + 1, version=4))
                values.append(encode(record))
            size += sum(map(len, values))
            await send_values(producer, topic, values)
    finally:
        await producer.stop()
    return size // max(1, records)


async def consume_aiokafka(bootstrap: str, topic: str, records: int, deadline_s: float) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000, **FETCH)
    await consumer.start()
    seen = 0
    started = None
    deadline = time.monotonic() + deadline_s
    try:
        while seen < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"aiokafka read {seen} of {records} records in {deadline_s} s")
            batches = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            if started is None and batches:
                started = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    message.value, message.topic, message.partition, message.offset, message.timestamp
                seen += len(messages)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    if seen != records:
        raise RuntimeError(f"aiokafka read {seen} records, {records} were produced")
    return records / elapsed


def consume_confluent(bootstrap: str, topic: str, records: int, deadline_s: float) -> float:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                         "max.partition.fetch.bytes": FETCH["max_partition_fetch_bytes"],
                         "fetch.max.bytes": FETCH["fetch_max_bytes"]})
    consumer.subscribe([topic])
    seen = 0
    started = None
    deadline = time.monotonic() + deadline_s
    try:
        while seen < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"confluent-kafka read {seen} of {records} records in {deadline_s} s")
            messages = consumer.consume(num_messages=20_000, timeout=1.0)
            if started is None and messages:
                started = time.perf_counter()
            for message in messages:
                if message.error() is not None:
                    raise RuntimeError(str(message.error()))
                message.value(), message.topic(), message.partition(), message.offset(), message.timestamp()
            seen += len(messages)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    if seen != records:
        raise RuntimeError(f"confluent-kafka read {seen} records, {records} were produced")
    return records / elapsed


async def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--deadline-s", type=float, default=300.0, help="give up on one consume after this long")
    args = parser.parse_args()

    broker = EmbeddedBroker(port=free_port()).start()
    runs: dict[str, list[float]] = {"aiokafka": [], "confluent_kafka": []}
    try:
        topics = Topics("bench-")
        await ensure_topics(broker.bootstrap_servers, topics, partitions=args.partitions)
        record_bytes = await fill(broker.bootstrap_servers, topics.raw_logs, args.records)
        for round_number in range(args.rounds):
            # Alternate which goes first: the machine is shared and its speed drifts.
            order = ["aiokafka", "confluent_kafka"] if round_number % 2 == 0 else ["confluent_kafka", "aiokafka"]
            for name in order:
                if name == "aiokafka":
                    rate = await consume_aiokafka(broker.bootstrap_servers, topics.raw_logs, args.records,
                                                  args.deadline_s)
                else:
                    rate = await asyncio.to_thread(consume_confluent, broker.bootstrap_servers, topics.raw_logs,
                                                   args.records, args.deadline_s)
                runs[name].append(round(rate))
    finally:
        broker.stop()
    medians = {name: statistics.median(rates) for name, rates in runs.items()}
    return {
        "bench": "consume",
        "records": args.records,
        "record_bytes": record_bytes,
        "partitions": args.partitions,
        "aiokafka_per_s": runs["aiokafka"],
        "confluent_kafka_per_s": runs["confluent_kafka"],
        "ratio_confluent_over_aiokafka": round(medians["confluent_kafka"] / medians["aiokafka"], 3),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    result = asyncio.run(main())
    print(json.dumps(result), flush=True)
