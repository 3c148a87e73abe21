"""The generator's CPU per log: what one 50 ms tick at 50,000 logs/s costs, in process, no broker.

A tick makes 2,500 records (`LogFactory.one`, incidents on), encodes them (`encode`), counts
their levels and packs them into Kafka record batches with aiokafka's builder (what
`send_values` does before the network). The baseline, in the same run, is the transport alone:
the same records, made beforehand, encoded and packed. `ratio` = tick / transport: how much the
making of logs costs on top of shipping them. CPU time of this thread, median of the ticks.

    .venv/bin/python bench/generator.py [--ticks 60] [--records 2500]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from datetime import datetime, timezone

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from logpipe.generator.service import LogFactory, default_incidents, encode


def pack(values: list[bytes]) -> int:
    batches = 1
    builder = _builder()
    for offset, value in enumerate(values):
        if builder.append(offset, timestamp=None, key=None, value=value, headers=[]) is None:
            builder.build()
            builder, batches = _builder(), batches + 1
            builder.append(offset, timestamp=None, key=None, value=value, headers=[])
    builder.build()
    return batches


def _builder() -> DefaultRecordBatchBuilder:
    return DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                     producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--records", type=int, default=2_500, help="records per tick (50 ms at 50,000 logs/s)")
    args = parser.parse_args()
    factory = LogFactory(error_rate=0.025, seed=11, incidents=default_incidents())
    made = factory.batch(args.records)

    def tick() -> None:
        moment = datetime.now(timezone.utc)
        records = [factory.one(moment, elapsed_s=130.0) for _ in range(args.records)]  # a surge is on
        values = list(map(encode, records))
        Counter([record["level"] for record in records])
        pack(values)

    def transport() -> None:
        pack(list(map(encode, made)))

    timings: dict[str, list[float]] = {"tick": [], "transport": []}
    for _ in range(args.ticks):  # alternating, so both see the same machine
        for name, run in (("tick", tick), ("transport", transport)):
            started = time.thread_time()
            run()
            timings[name].append((time.thread_time() - started) / args.records * 1e6)
    tick_us, transport_us = (statistics.median(timings[name]) for name in ("tick", "transport"))
    print(json.dumps({"bench": "generator", "records_per_tick": args.records, "ticks": args.ticks,
                      "tick_us_per_log": round(tick_us, 2), "transport_us_per_log": round(transport_us, 2),
                      "ratio": round(tick_us / transport_us, 2)}))


if __name__ == "__main__":
    main()
