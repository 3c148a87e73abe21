"""Scale-out of ingest: one replica, then two, as separate processes sharing raw-logs' partitions.

Each replica is `python -m logpipe.cli run ingest` (what a Kubernetes pod runs) with the
shipped defaults, in one consumer group, each writing to its own embedded ClickHouse (chdb
allows one process per data directory and no ClickHouse server runs here; with a server they
would share it). The bench first fills raw-logs with `--records` generated logs (757 B); each count of replicas
then reads the whole topic in its own new consumer group. It measures from the moment the group
settled (every partition held, every member holding some: what a member read before that is left
out) until the replicas together stored every record, and reports how the records split between
the replicas (and which partitions each held), the rate, and what each replica cost: CPU seconds
over the window (from /proc), cores used, RSS, and logs stored per CPU second, which is the
sizing rule's number (logs/s one replica takes per core it is given).

    .venv/bin/python bench/scaleout.py [--records 1000000] [--partitions 4] [--replicas 1,2]

Prints one JSON object. On a 2-core machine two replicas compete for the same cores (and with
whatever else runs there), so the total cannot double here: per-CPU-second cost is what carries over to a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from consume import fill  # noqa: E402 - bench/ is not a package
from running import ROOT, cpu_seconds, load_average, rss_bytes  # noqa: E402

from logpipe.core.broker import EmbeddedBroker, free_port  # noqa: E402
from logpipe.core.topics import Topics, ensure_topics  # noqa: E402


class Replica:
    def __init__(self, index: int, bootstrap: str, prefix: str, group: str, data_dir: str) -> None:
        self.index = index
        self.port = free_port()
        self.log = open(os.path.join(data_dir, f"ingest-{index}.log"), "w")
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, TOPIC_PREFIX=prefix, INGEST_GROUP_ID=group,
                   LOGPIPE_DATA_DIR=os.path.join(data_dir, f"replica-{index}"), INGEST_PORT=str(self.port),
                   INGEST_SESSION_TIMEOUT_MS="6000", INGEST_HEARTBEAT_INTERVAL_MS="1000", LOG_FORMAT="json",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "services"), os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen([sys.executable, "-m", "logpipe.cli", "run", "ingest"], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cpu(self) -> float:
        return cpu_seconds(f"/proc/{self.process.pid}/stat")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


async def stats(client, replica: Replica) -> dict | None:
    try:
        response = await client.get(replica.url("/stats"))
        return response.json() if response.status_code == 200 else None
    except Exception:  # noqa: BLE001 - not up yet
        return None


async def run(bootstrap: str, topics: Topics, replicas: int, records: int, partitions: int, data_dir: str) -> dict:
    import httpx

    group = f"{topics.prefix}ingest-{replicas}x-{uuid.uuid4().hex[:4]}"
    members = [Replica(index, bootstrap, topics.prefix, group, data_dir) for index in range(replicas)]
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            # Measured from the moment every partition is held by a member and every member holds
            # some (a settled group): what a member read before the group settled is left out.
            deadline = time.monotonic() + 300
            while True:
                for member in members:
                    if member.process.poll() is not None:
                        raise RuntimeError(f"replica {member.index} stopped: "
                                           f"{Path(member.log.name).read_text()[-3000:]}")
                seen = [await stats(client, member) for member in members]
                held = [set(s["assigned_partitions"]) if s else set() for s in seen]
                if all(held) and len(set().union(*held)) == partitions and sum(map(len, held)) == partitions:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the group did not settle: {held}")
                await asyncio.sleep(0.2)
            load_start = load_average()
            cpu_before = [member.cpu() for member in members]
            stored_before = [s["written"] + s["dlq"] for s in seen]
            started = time.monotonic()
            deadline = started + 900
            while True:
                seen = [await stats(client, member) for member in members]
                stored = [s["written"] + s["dlq"] if s else 0 for s in seen]
                if sum(stored) >= records:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {sum(stored)} of {records} stored")
                await asyncio.sleep(0.1)
            wall = time.monotonic() - started
            cpu_after = [member.cpu() for member in members]
            load_end = load_average()
            per_replica = []
            window = sum(stored) - sum(stored_before)
            for member, before, after, first, last, s in zip(members, cpu_before, cpu_after, stored_before, stored, seen):
                cpu = after - before
                part = last - first
                per_replica.append({
                    "replica": member.index, "partitions": sorted(s["assigned_partitions"]),
                    "stored_before_settled": first, "stored_measured": part,
                    "share": round(part / window, 3) if window else None,
                    "cpu_seconds": round(cpu, 2), "cores": round(cpu / wall, 2),
                    "rss_mb": round(rss_bytes(member.process.pid) / 2**20),
                    "logs_per_cpu_second": round(part / cpu) if cpu else None,
                    "last_batch_records": s.get("last_batch_records"),
                })
    finally:
        for member in members:
            member.stop()
    total_cpu = sum(r["cpu_seconds"] for r in per_replica)
    return {"replicas": replicas, "measured_records": window, "seconds": round(wall, 2),
            "logs_per_s": round(window / wall), "logs_per_cpu_second": round(window / total_cpu) if total_cpu else None,
            "cores": round(total_cpu / wall, 2),
            "load_average_start": load_start, "load_average_end": load_end, "per_replica": per_replica}


async def main_async(args) -> dict:
    counts = [int(n) for n in args.replicas.split(",")]
    result = {"bench": "scaleout", "cpu_count": os.cpu_count(), "partitions": args.partitions,
              "records": args.records, "load_average_before": load_average(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="logpipe-scaleout-", ignore_cleanup_errors=True) as temp, \
            EmbeddedBroker(port=free_port()) as broker:
        # One filled topic, read by each run's own consumer group from the start: the replicas
        # measured compete with no producer.
        topics = Topics(f"scaleout-{uuid.uuid4().hex[:6]}.")
        await ensure_topics(broker.bootstrap_servers, topics, partitions=args.partitions)
        started = time.monotonic()
        result["record_bytes"] = await fill(broker.bootstrap_servers, topics.raw_logs, args.records)
        result["fill_seconds"] = round(time.monotonic() - started, 1)
        for count in counts:
            run_dir = os.path.join(temp, f"run-{count}")
            os.makedirs(run_dir)
            outcome = await run(broker.bootstrap_servers, topics, count, args.records, args.partitions, run_dir)
            print(json.dumps({"replicas": count, "logs_per_s": outcome["logs_per_s"],
                              "load": outcome["load_average_end"]}), file=sys.stderr, flush=True)
            result["runs"].append(outcome)
    result["load_average_after"] = load_average()
    one = next((run for run in result["runs"] if run["replicas"] == 1), None)
    if one:
        result["speedup_over_one_replica"] = {str(run["replicas"]): round(run["logs_per_s"] / one["logs_per_s"], 2)
                                              for run in result["runs"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--replicas", default="1,2", help="replica counts to run, one after the other")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
