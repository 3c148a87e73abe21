"""Does the analysis find what a person would? Recall and precision per kind of incident.

For each seed: six services log for several days (counts with a daily rhythm, about 300 to
900 logs an hour each, eight error and warning patterns per service, each hour's rate off by a
log-normal factor of sigma 0.2 so counts vary more than Poisson; a seventh service, `reports`,
logs only from 08:00 to 18:00 and its quiet nights must not be reported), and the last day
(the analysed 24-hour window) holds one incident of each kind at a random hour, each in a
different random service:

- `new`: an error family never seen before, 1 to 4 hours at 8 to 40 an hour;
- `surge`: an existing pattern 5 to 12 times its rate for 1 to 3 hours;
- `slow_burn`: an existing pattern growing linearly to 4 to 8 times its rate over 4 to 8 hours;
- `drop`: the service keeps 10 to 30 % of its logs for 2 to 5 hours, from a random minute;
- `silence`: the service sends nothing for 2 to 5 hours from a random minute, or (one time in
  four) stops for good.

The logs are written straight into an embedded ClickHouse (chdb) with the store function
ingest itself uses (`ClickHouseStore.insert_arrow`, the `logs` table): going through Kafka and
the ingest service would add minutes per seed on a 2-core machine and measure ingest, not the
analysis; the analyzer reads only ClickHouse. Then one real analysis run (`Analyzer.run`,
SQLite, no LLM, no embedding model: clusters do not change what is detected) judges the window.

A detected anomaly matches an injected incident when kinds agree (`new_pattern` <- new,
`pattern_spike` <- surge or slow burn, `volume_drop` <- drop, `service_quiet` <- silence),
the service (and pattern, for pattern kinds) is the same and the times overlap. Recall per
injected kind, precision per detected kind (kinds nothing was injected for, such as
`volume_spike`, count only as false alarms). The tuning seeds were used while choosing the
detector's rules; the held-out seeds were run once, after.

Prints one JSON line per seed set and a total.

`--issue` instead replays issue #19's case at its size: about 5 million logs from six services
over three days of history and the analysed day, in which one service sends nothing from 05:00
to 08:00 and one pattern surges tenfold for two hours; it prints the analysis time of two runs
of the same window and what they found (the same both times).

    .venv/bin/python bench/incidents.py                      # tuning seeds 1-8 and held-out seeds
    .venv/bin/python bench/incidents.py --seeds 1,2 --no-held-out
    .venv/bin/python bench/incidents.py --issue
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

TUNING_SEEDS = tuple(range(1, 9))
HELD_OUT_SEEDS = tuple(range(1001, 1009))
SERVICES = ("checkout", "payments", "orders", "inventory", "auth", "search")
# Logs only from 08:00 to 18:00 UTC: its silent nights are normal and must not be reported.
BATCH = "reports"
JITTER = 0.2
INJECTED_KINDS = ("new", "surge", "slow_burn", "drop", "silence")
MATCHES = {"new_pattern": ("new",), "pattern_spike": ("surge", "slow_burn"), "volume_drop": ("drop",),
           "service_quiet": ("silence",)}


def scenario(seed: int, days: int):
    """Several days of history and a window day with one incident of each kind; returns the
    scenario, the extra logs of the new family, and the injected incidents (times absolute)."""
    import numpy as np

    from logpipe.analyzer import synthetic as syn

    rng = np.random.default_rng(seed)
    start = datetime(2026, 3, 2, tzinfo=timezone.utc) + timedelta(days=int(rng.integers(0, 7)))
    window_start = start + timedelta(days=days)
    patterns = syn.default_patterns(list(SERVICES), per_service=8, per_hour=float(rng.uniform(10, 25)))
    volume = {service: float(rng.uniform(300, 900)) for service in SERVICES}
    volume[BATCH] = float(rng.uniform(200, 600))
    patterns += [p for p in syn.default_patterns([BATCH], per_service=4, per_hour=10.0)]
    order = list(rng.permutation(SERVICES))
    base_hour = days * 24
    injected, incidents, outages = [], [], []
    extra = []

    def place(length: float) -> float:
        return float(rng.uniform(1, 24 - length - 0.5))

    def at(hour: float) -> datetime:
        return start + timedelta(hours=hour)

    # new family
    service = order[0]
    hours = int(rng.integers(1, 5))
    begin = int(place(hours))
    new = syn.PatternSpec(service, f"Unexpected {service} state {{n}} after schema change {seed}", "ERROR",
                          float(rng.uniform(8, 40)))
    extra.append(syn.Scenario(start=at(base_hour + begin), hours=hours, volume_per_hour={}, patterns=[new],
                              seed=seed * 31 + 1))
    injected.append({"kind": "new", "service": service, "pattern_id": str(new.pattern_id),
                      "start": at(base_hour + begin), "end": at(base_hour + begin + hours)})
    # surge and slow burn
    for kind, service in (("surge", order[1]), ("slow_burn", order[2])):
        own = [p for p in patterns if p.service == service]
        target = own[int(rng.integers(0, len(own)))]
        if kind == "surge":
            hours, factor = int(rng.integers(1, 4)), float(rng.uniform(5, 12))
        else:
            hours, factor = int(rng.integers(4, 9)), float(rng.uniform(4, 8))
        begin = int(place(hours))
        incidents.append(syn.Incident(target, start_hour=base_hour + begin, hours=hours, factor=factor,
                                      ramp=kind == "slow_burn"))
        injected.append({"kind": kind, "service": service, "pattern_id": str(target.pattern_id),
                         "start": at(base_hour + begin), "end": at(base_hour + begin + hours)})
    # drop and silence, from a random minute
    for kind, service in (("drop", order[3]), ("silence", order[4])):
        hours = float(rng.uniform(2, 5))
        begin = place(hours)
        forever = kind == "silence" and rng.random() < 0.25
        factor = float(rng.uniform(0.1, 0.3)) if kind == "drop" else 0.0
        outages.append(syn.Outage(service, base_hour + begin, None if forever else hours, factor))
        injected.append({"kind": kind, "service": service, "pattern_id": "", "start": at(base_hour + begin),
                         "end": window_start + timedelta(days=1) if forever else at(base_hour + begin + hours)})
    main = syn.Scenario(start=start, hours=(days + 1) * 24, patterns=patterns, volume_per_hour=volume,
                        incidents=incidents, outages=outages, seed=seed, active_hours={BATCH: (8, 18)},
                        jitter=JITTER)
    return main, extra, injected, window_start


def evaluate(anomalies: list[dict], injected: list[dict]) -> tuple[dict, list]:
    from logpipe.analyzer.windows import parse_time

    found = {i: False for i in range(len(injected))}
    verdicts = []
    for anomaly in anomalies:
        start, end = parse_time(anomaly["start"]), parse_time(anomaly["end"])
        hit = None
        for index, incident in enumerate(injected):
            if incident["kind"] not in MATCHES.get(anomaly["kind"], ()):
                continue
            if incident["service"] != anomaly["service"]:
                continue
            if incident["pattern_id"] and incident["pattern_id"] != anomaly["pattern_id"]:
                continue
            if start < incident["end"] and incident["start"] < end:
                hit = index
                break
        if hit is not None:
            found[hit] = True
        verdicts.append({"kind": anomaly["kind"], "service": anomaly["service"], "true": hit is not None,
                         "start": anomaly["start"], "end": anomaly["end"], "severity": anomaly["severity"]})
    return found, verdicts


def run(seeds, days: int, workdir: Path) -> dict:
    from logpipe.ai.llm import NoLLM
    from logpipe.analyzer import synthetic as syn
    from logpipe.analyzer.runner import Analyzer
    from logpipe.analyzer.settings import Settings
    from logpipe.stores import sql
    from logpipe.stores.clickhouse import ClickHouseStore

    injected_total = {kind: 0 for kind in INJECTED_KINDS}
    recalled = {kind: 0 for kind in INJECTED_KINDS}
    detected: dict[str, int] = {}
    true_detected: dict[str, int] = {}
    seconds, misses, false_alarms = [], [], []
    for seed in seeds:
        main, extra, injected, window_start = scenario(seed, days)
        store = ClickHouseStore(f"chdb://{workdir / 'chdb'}", database=f"incidents_{seed}")
        store.apply_schema(ttl_days=3650)
        table = syn.build(main)
        store.insert_arrow("logs", table)
        offset = table.num_rows
        for part in extra:
            rows = syn.build(part, record_offset=offset)
            offset += rows.num_rows
            store.insert_arrow("logs", rows)
        settings = Settings(LOGPIPE_DATA_DIR=str(workdir / f"data-{seed}"), llm_backend="none",
                            ANALYSIS_SCHEDULE_CRON="", novel_errors_enabled=False)
        engine = sql.engine(f"sqlite:///{workdir / f'logpipe-{seed}.db'}")
        sql.init_db(engine)
        analyzer = Analyzer(settings, store, engine, embed=None, llm=NoLLM())
        row = analyzer.run(24, end=window_start + timedelta(days=1))
        if row.status != "completed":
            raise SystemExit(f"seed {seed}: run failed: {row.error}")
        seconds.append(row.report["timings"]["analysis_seconds"])
        found, verdicts = evaluate(row.report["anomalies"], injected)
        for index, incident in enumerate(injected):
            injected_total[incident["kind"]] += 1
            recalled[incident["kind"]] += int(found[index])
            if not found[index]:
                misses.append({"seed": seed, **{k: str(v) for k, v in incident.items()}})
        for verdict in verdicts:
            detected[verdict["kind"]] = detected.get(verdict["kind"], 0) + 1
            true_detected[verdict["kind"]] = true_detected.get(verdict["kind"], 0) + int(verdict["true"])
            if not verdict["true"]:
                false_alarms.append({"seed": seed, **verdict})
        store.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")
    return {
        "seeds": list(seeds),
        "recall": {kind: round(recalled[kind] / injected_total[kind], 3) for kind in INJECTED_KINDS},
        "precision": {kind: round(true_detected[kind] / detected[kind], 3) for kind in sorted(detected)},
        "injected": injected_total, "detected": detected,
        "analysis_seconds_mean": round(sum(seconds) / len(seconds), 3),
        "analysis_seconds_max": round(max(seconds), 3),
        "misses": misses, "false_alarms": false_alarms,
    }


def issue_case(workdir: Path) -> dict:
    from logpipe.ai.llm import NoLLM
    from logpipe.analyzer import synthetic as syn
    from logpipe.analyzer.runner import Analyzer
    from logpipe.analyzer.settings import Settings
    from logpipe.stores import sql
    from logpipe.stores.clickhouse import ClickHouseStore

    start = datetime(2026, 3, 2, tzinfo=timezone.utc)
    patterns = syn.default_patterns(list(SERVICES), per_service=12, per_hour=30)
    surging = patterns[3]
    scenario = syn.Scenario(start=start, hours=96, patterns=patterns, seed=3,
                            volume_per_hour={s: 5_000_000 / 96 / len(SERVICES) for s in SERVICES},
                            incidents=[syn.Incident(surging, start_hour=86, hours=2, factor=10)],
                            outages=[syn.Outage("auth", 77, 3, 0.0)])
    table = syn.build(scenario)
    store = ClickHouseStore(f"chdb://{workdir / 'chdb'}", database="issue_case")
    store.apply_schema(ttl_days=3650)
    store.insert_arrow("logs", table)
    engine = sql.engine(f"sqlite:///{workdir / 'issue.db'}")
    sql.init_db(engine)
    settings = Settings(LOGPIPE_DATA_DIR=str(workdir), llm_backend="none", ANALYSIS_SCHEDULE_CRON="",
                        novel_errors_enabled=False)
    analyzer = Analyzer(settings, store, engine, embed=None, llm=NoLLM())
    runs = [analyzer.run(24, end=start + timedelta(days=4)) for _ in range(2)]
    found = [[(a["kind"], a["service"], a["start"], a["end"]) for a in row.report["anomalies"]] for row in runs]
    return {"logs": table.num_rows, "analysis_seconds": [row.report["timings"]["analysis_seconds"] for row in runs],
            "query_seconds": [row.report["timings"]["query_seconds"] for row in runs],
            "silence_found": ("service_quiet", "auth", "2026-03-05T05:00:00.000Z", "2026-03-05T08:00:00.000Z")
            in found[0],
            "surge_found_as_one_incident": [k for k in found[0] if k[0] == "pattern_spike" and k[1] == surging.service]
            == [("pattern_spike", surging.service, "2026-03-05T14:00:00.000Z", "2026-03-05T16:00:00.000Z")],
            "rerun_identical": runs[0].report["anomalies"] == runs[1].report["anomalies"]
            and runs[0].summary == runs[1].summary,
            "descriptions": [a["description"] for a in runs[0].report["anomalies"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default=",".join(map(str, TUNING_SEEDS)))
    parser.add_argument("--held-out", default=",".join(map(str, HELD_OUT_SEEDS)))
    parser.add_argument("--no-held-out", action="store_true")
    parser.add_argument("--days", type=int, default=4, help="days of history before the analysed day")
    parser.add_argument("--issue", action="store_true", help="replay issue #19's case (5 million logs) instead")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    workdir = Path(tempfile.mkdtemp(prefix="logpipe-bench-incidents-"))
    if args.issue:
        try:
            print(json.dumps({"bench": "incidents", "set": "issue-19", **issue_case(workdir)}))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    started = time.perf_counter()
    try:
        results = {"tuning": run([int(s) for s in args.seeds.split(",")], args.days, workdir)}
        if not args.no_held_out:
            results["held_out"] = run([int(s) for s in args.held_out.split(",")], args.days, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for name, result in results.items():
        print(json.dumps({"bench": "incidents", "set": name, **result}))
    goal = all(r["recall"][k] >= 0.9 for r in results.values() for k in INJECTED_KINDS) and all(
        value >= 0.8 for r in results.values() for value in r["precision"].values())
    print(json.dumps({"bench": "incidents", "goal_met": goal, "days_of_history": args.days,
                      "total_seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
