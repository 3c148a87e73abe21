"""Capacity of the whole platform as `make dev` runs it: the highest generator rate at which
ingest and the vectorizer keep up.

`logpipe dev` runs in a child process (bench/running.py: Tansu, then every service in one
process through the same `run_services` as `logpipe run all`). The bench starts the platform's
own generator and raises its rate step by step (`--rates`, default 10k, 20k, 35k, 50k, 70k,
100k logs/s) with `--forwarded-share` (default 5 %) of the logs at WARN/ERROR/FATAL, the levels
ingest forwards to the vectorizer. Each step lasts `--step-seconds` (default 60). A step holds when
- the generator produced at least 95 % of the asked rate (it is part of the platform: if it
  cannot make the logs, the platform cannot take them either);
- ingest's lag (logs produced minus logs stored or dead-lettered, from the services' own
  `/stats` counters: Tansu undercounts end offsets, so the broker's lag is only printed beside)
  stays bounded: at the step's end at most `--lag-bound-seconds` (default 5) of its input, and
  not growing over the step's second half by more than 5 % of its input rate;
- the vectorizer's lag (forwarded minus vectorized or dead-lettered) the same, against its
  own input rate;
- the dashboard still answers: every `--dashboard-every` seconds the bench sends the requests
  the Explore page (the landing page) sends at once on load (`/api/whoami`, `/api/services`,
  `/api/logs` with the total, `/api/logs/histogram`: bench/running.py `explore_page_urls`) and
  each must answer at p95 within `--dashboard-target-ms` (default 1000 ms: the page then shows
  its first rows within about a second, the freshness goal's scale). `/api/logs` alone has a
  stricter target without a writer (p95 <= 50 ms over 10M rows, bench/query.py); its times here
  are printed beside it.
The bench stops at the first step that does not hold (`--keep-going` runs every step).

Each step reports the CPU each stage used, in cores (CPU seconds per second): the platform
process's threads charged to stages by the sampler in bench/running.py, the broker process,
and this bench's own process (its HTTP polling, not part of the platform).

    .venv/bin/python bench/capacity.py                       # 60 s steps (the issue's minute)
    .venv/bin/python bench/capacity.py --step-seconds 20     # a quick look
    .venv/bin/python bench/capacity.py --rates 20000,35000 --keep-going

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from running import Platform, cpu_seconds, explore_page_urls, load_average  # noqa: E402

FORWARDED_LEVELS = {"WARN", "ERROR", "FATAL"}


def error_rate_for_share(share: float, sample: int = 20_000) -> float:
    """The generator's `error_rate_percentage` that makes `share` of its logs WARN/ERROR/FATAL:
    its normal traffic already holds some warnings, so the two differ. The share is linear in
    the error rate, so two samples of the generator's own factory give it."""
    from logpipe.generator.service import LogFactory

    def forwarded(error_rate: float) -> float:
        factory = LogFactory(error_rate=error_rate, seed=11)
        return sum(factory.one(elapsed_s=0.0)["level"] in FORWARDED_LEVELS for _ in range(sample)) / sample

    at_zero, at_one = forwarded(0.0), forwarded(1.0)
    if share <= at_zero:
        return 0.0
    return round(min(100.0, 100.0 * (share - at_zero) / (at_one - at_zero)), 3)


def slope(points: list[tuple[float, float]], at_least: int = 3) -> float:
    """Least-squares slope of (x, y) pairs (y per unit of x; 0 with fewer than `at_least`)."""
    if len(points) < at_least:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))], 1)


class Counters:
    def __init__(self, platform: Platform, client) -> None:
        self.platform = platform
        self.client = client

    async def _get(self, service: str) -> dict:
        response = await self.client.get(f"{self.platform.url(service)}/stats")
        response.raise_for_status()
        return response.json()

    async def read(self) -> dict:
        generator, ingest, vectorizer = await asyncio.gather(
            self._get("generator"), self._get("ingest"), self._get("vectorizer"))
        return {
            "at": time.monotonic(),
            "produced": generator["produced"],
            "produce_errors": generator["produce_errors"],
            "ingest_consumed": ingest["consumed"],
            "ingest_done": ingest["written"] + ingest["dlq"] + ingest["replay_skipped"],
            "ingest_dlq": ingest["dlq"],
            "forwarded": ingest["forwarded"],
            "vectorizer_consumed": vectorizer["consumed"],
            "vectorizer_done": vectorizer["vectorized"] + vectorizer["dlq"],
            "ingest_batches": ingest.get("batches", 0),
            "vectorizer_batches": vectorizer.get("batches", 0),
            "ingest_broker_lag": ingest.get("lag"),
            "vectorizer_broker_lag": vectorizer.get("lag"),
        }


def cpu_snapshot(platform: Platform) -> dict:
    processes = {}
    for pid, name in platform.processes().items():
        try:
            processes[name] = processes.get(name, 0.0) + cpu_seconds(f"/proc/{pid}/stat")
        except OSError:
            pass
    return {"at": time.monotonic(), "processes": processes, "sampler": platform.stages(),
            "bench": time.process_time()}


def cpu_used(before: dict, after: dict) -> dict:
    """Cores (CPU seconds per wall second) per stage, per process, per thread name."""
    wall = after["at"] - before["at"]

    def diff(a: dict, b: dict) -> dict:
        return {key: round((b.get(key, 0.0) - a.get(key, 0.0)) / wall, 3) for key in b
                if b.get(key, 0.0) - a.get(key, 0.0) > 0.005 * wall}

    stages = diff(before["sampler"].get("stages", {}), after["sampler"].get("stages", {}))
    processes = diff(before["processes"], after["processes"])
    for name, cores in processes.items():
        if name.startswith("logpipe run "):
            stages[f"{name.removeprefix('logpipe run ')} (own process)"] = cores
        elif name != "platform":
            stages[f"broker ({name} process)"] = cores
    stages["bench client (not the platform)"] = round((after["bench"] - before["bench"]) / wall, 3)
    total = sum(cores for name, cores in stages.items() if not name.startswith("bench"))
    return {
        # The platform process's own CPU from /proc (the sampler's stages plus the sampler
        # itself should add up to it, less threads that ended between two samples).
        "platform_process_cores": processes.get("platform"),
        "cores_by_stage": dict(sorted(stages.items(), key=lambda item: -item[1])),
        "share_by_stage": {name: round(cores / total, 3) for name, cores in stages.items()
                           if not name.startswith("bench") and total},
        "platform_cores": round(total, 3),
        "cores_by_thread": dict(sorted(diff(before["sampler"].get("threads", {}),
                                            after["sampler"].get("threads", {})).items(), key=lambda item: -item[1])[:15]),
    }


def bounded(points: list[tuple[float, float]], input_rate: float, bound_s: float) -> dict:
    """Is the lag bounded? End lag within `bound_s` of input, and not growing in the second half."""
    if not points:
        return {"bounded": False, "why": "no samples"}
    start = points[0][0]
    end_lag = sum(v for _, v in points[-5:]) / len(points[-5:])
    half = [(t - start, v) for t, v in points if t - start >= (points[-1][0] - start) / 2]
    growth = slope(half)
    rate = max(input_rate, 1.0)
    ok = end_lag <= bound_s * rate and growth <= 0.05 * rate
    return {"bounded": ok, "end_lag": round(end_lag), "end_lag_seconds_of_input": round(end_lag / rate, 2),
            "max_lag": round(max(v for _, v in points)), "second_half_growth_per_s": round(growth, 1)}


async def dashboard_burst(platform: Platform, client, latencies: dict[str, list[float]], failures: list[str]) -> None:
    headers = {"Authorization": f"Bearer {platform.token}"}

    async def one(url: str) -> None:
        started = time.perf_counter()
        try:
            response = await client.get(platform.url("gateway") + url, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                failures.append(f"{url.split('?')[0]}: {response.status_code}")
                return
            latencies.setdefault(url.split("?")[0], []).append(elapsed)
        except Exception as exc:  # noqa: BLE001 - a timeout is a miss, recorded
            failures.append(f"{url.split('?')[0]}: {type(exc).__name__}")

    await asyncio.gather(*(one(url) for url in explore_page_urls()))


async def run_step(platform: Platform, client, counters: Counters, rate: float, args, first: bool) -> dict:
    import httpx

    control = await client.put(f"{platform.url('generator')}/control", json={"rate_per_second": rate})
    control.raise_for_status()
    if first:
        (await client.post(f"{platform.url('generator')}/start")).raise_for_status()
    load_start = load_average()
    cpu_before = cpu_snapshot(platform)
    start = await counters.read()
    samples = [start]
    latencies: dict[str, list[float]] = {}
    failures: list[str] = []
    bursts = []
    step_end = start["at"] + args.step_seconds
    next_burst = start["at"] + min(5.0, args.step_seconds / 4)
    unanswered = 0
    while time.monotonic() < step_end:
        await asyncio.sleep(max(0.0, min(1.0, step_end - time.monotonic())))
        try:
            samples.append(await counters.read())
        except httpx.HTTPError:
            # A platform too busy to answer /stats within the client's timeout: the step goes
            # on, and the count of unanswered samples is reported with it.
            unanswered += 1
        if args.dashboard_every > 0 and time.monotonic() >= next_burst:
            next_burst = time.monotonic() + args.dashboard_every
            bursts.append(asyncio.create_task(dashboard_burst(platform, client, latencies, failures)))
    cpu_after = cpu_snapshot(platform)
    load_end = load_average()
    if bursts:
        await asyncio.wait(bursts, timeout=60)
    end = samples[-1]
    wall = end["at"] - start["at"]
    if wall <= 0:
        raise RuntimeError("no /stats answer during the step")
    produced_rate = (end["produced"] - start["produced"]) / wall
    stored_rate = (end["ingest_done"] - start["ingest_done"]) / wall
    forwarded_rate = (end["forwarded"] - start["forwarded"]) / wall
    vectorized_rate = (end["vectorizer_done"] - start["vectorizer_done"]) / wall
    ingest = bounded([(s["at"], max(0, s["produced"] - s["ingest_done"])) for s in samples], produced_rate,
                     args.lag_bound_seconds)
    vectorizer = bounded([(s["at"], max(0, s["forwarded"] - s["vectorizer_done"])) for s in samples],
                         forwarded_rate, args.lag_bound_seconds)
    dashboard = {path: {"p50_ms": percentile(values, 0.5), "p95_ms": percentile(values, 0.95), "n": len(values)}
                 for path, values in sorted(latencies.items())}
    dashboard_ok = (not failures and bool(dashboard)
                    and all(entry["p95_ms"] <= args.dashboard_target_ms for entry in dashboard.values()))
    if args.dashboard_every <= 0:
        dashboard_ok = True
    generator_ok = produced_rate >= 0.95 * rate
    cpu = cpu_used(cpu_before, cpu_after)
    stages = cpu["cores_by_stage"]
    ingest_cores = stages.get("ingest", 0.0) + stages.get("clickhouse (chdb threads)", 0.0)
    vectorizer_cores = stages.get("vectorizer", 0.0) + stages.get("unnamed native threads (ONNX Runtime, ...)", 0.0)
    misses = [name for name, ok in (("platform answering /stats", not unanswered), ("generator", generator_ok), ("ingest lag", ingest["bounded"]),
                                    ("vectorizer lag", vectorizer["bounded"]), ("dashboard", dashboard_ok)) if not ok]
    return {
        "rate": rate, "seconds": round(wall, 1), "holds": not misses, "missed": misses,
        "stats_unanswered": unanswered,
        "load_average_start": load_start, "load_average_end": load_end,
        "produced_per_s": round(produced_rate), "stored_per_s": round(stored_rate),
        "forwarded_per_s": round(forwarded_rate), "vectorized_per_s": round(vectorized_rate),
        "forwarded_share": round(forwarded_rate / produced_rate, 4) if produced_rate else None,
        # Records per insert (ingest) and per embed-and-upsert (vectorizer): fixed costs per
        # batch (ClickHouse parts to merge, the masking query, the novelty search) weigh less
        # in larger ones.
        "records_per_batch": {
            "ingest": round((end["ingest_done"] - start["ingest_done"])
                            / max(1, end["ingest_batches"] - start["ingest_batches"])),
            "vectorizer": round((end["vectorizer_done"] - start["vectorizer_done"])
                                / max(1, end["vectorizer_batches"] - start["vectorizer_batches"]))},
        "ingest_lag": ingest, "vectorizer_lag": vectorizer,
        "broker_reported_lag_end": {"ingest": end["ingest_broker_lag"], "vectorizer": end["vectorizer_broker_lag"]},
        "dashboard": dashboard, "dashboard_failures": failures[:10], "dashboard_ok": dashboard_ok,
        # Stage cost per log: ingest's Python and ClickHouse's threads over what it stored, the
        # vectorizer's Python and the model's native threads over what it vectorized.
        "ingest_logs_per_core_s": round(stored_rate / ingest_cores) if ingest_cores else None,
        # What each stage costs per 1,000 logs produced, and the cores the platform would need
        # at the goal's rate at that cost (fixed costs such as the dashboard's queries and the
        # model's threads weigh more at low rates, so this overstates from a low step).
        "cpu_ms_per_1000_logs": {name: round(1000 * 1000 * cores / produced_rate, 1)
                                 for name, cores in cpu["cores_by_stage"].items()
                                 if produced_rate and not name.startswith("bench")},
        "cores_needed_at_50000_per_s": round(cpu["platform_cores"] / produced_rate * 50_000, 2) if produced_rate else None,
        "vectorizer_logs_per_core_s": round(vectorized_rate / vectorizer_cores) if vectorizer_cores else None,
        **cpu,
    }


async def main_async(args) -> dict:
    import httpx

    error_rate = error_rate_for_share(args.forwarded_share)
    rates = [float(rate) for rate in args.rates.split(",")]
    result: dict = {"bench": "capacity", "cpu_count": os.cpu_count(), "step_seconds": args.step_seconds,
                    "partitions": args.partitions, "forwarded_share_asked": args.forwarded_share,
                    "generator_process": args.generator_process,
                    "generator_error_rate_percentage": error_rate,
                    "criteria": {"generator_at_least": 0.95, "lag_bound_seconds_of_input": args.lag_bound_seconds,
                                 "lag_growth_at_most_of_input_rate": 0.05,
                                 "dashboard_p95_ms_at_most": args.dashboard_target_ms,
                                 "lag_source": "the services' /stats counters (Tansu undercounts end offsets)"},
                    "goal_logs_per_s": 50_000, "load_average_before": load_average()}
    started = time.monotonic()
    env = {"LOGPIPE_DEV_GENERATOR_PROCESS": "true"} if args.generator_process else {}
    with Platform(partitions=args.partitions, env=env) as platform:
        result["platform_start_s"] = round(time.monotonic() - started, 1)
        # uvicorn closes a connection idle for 5 s; a burst every 5 s must not reuse one
        # the server is closing (a client-side race, not a slow answer).
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(keepalive_expiry=2.0)) as client:
            await client.put(f"{platform.url('generator')}/control",
                             json={"error_rate_percentage": error_rate})
            counters = Counters(platform, client)
            steps = []
            for index, rate in enumerate(rates):
                step = await run_step(platform, client, counters, rate, args, first=index == 0)
                steps.append(step)
                print(json.dumps({"step": step["rate"], "holds": step["holds"], "missed": step["missed"],
                                  "produced_per_s": step["produced_per_s"], "stored_per_s": step["stored_per_s"],
                                  "load": step["load_average_end"]}), file=sys.stderr, flush=True)
                if not step["holds"] and not args.keep_going:
                    break
            await client.post(f"{platform.url('generator')}/stop")
    held = [step["rate"] for step in steps if step["holds"]]
    # Sustained: the highest rate held with every step below it held too.
    sustained = 0.0
    for step in steps:
        if not step["holds"]:
            break
        sustained = step["rate"]
    result.update(steps=steps, sustained_logs_per_s=sustained, held_rates=held,
                  meets_goal=sustained >= 50_000, load_average_after=load_average(),
                  cost_model=cost_model(steps))
    return result


def cost_model(steps: list[dict], goal: float = 50_000) -> dict | None:
    """Each stage's CPU against the rate actually produced, fitted over the steps (least squares):
    the marginal cost per log (the slope, microseconds of CPU per log) and the fixed cost (the
    intercept, cores spent whatever the rate: the dashboard's queries, timers, idle threads).
    Fitted over steps the machine could carry, it tells what the goal's rate would need even
    where the steps could not reach it; the Python part of it shares one GIL in `run all`."""
    usable = [step for step in steps if step["produced_per_s"] > 0]
    if len({step["produced_per_s"] for step in usable}) < 2:
        return None
    names = {name for step in usable for name in step["cores_by_stage"] if not name.startswith("bench")}
    stages = {}
    for name in sorted(names):
        points = [(step["produced_per_s"], step["cores_by_stage"].get(name, 0.0)) for step in usable]
        marginal = slope(points, at_least=2)
        mean_rate = sum(rate for rate, _ in points) / len(points)
        fixed = sum(cores for _, cores in points) / len(points) - marginal * mean_rate
        stages[name] = {"us_per_log": round(marginal * 1e6, 2), "fixed_cores": round(fixed, 3),
                        "cores_at_goal": round(fixed + marginal * goal, 2)}
    total = sum(stage["cores_at_goal"] for stage in stages.values())
    return {"fitted_over_rates": [step["produced_per_s"] for step in usable], "by_stage": stages,
            "cores_needed_at_goal": round(total, 2), "goal_logs_per_s": goal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10000,20000,35000,50000,70000,100000",
                        help="generator rates (logs/s), one step each, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=60.0)
    parser.add_argument("--forwarded-share", type=float, default=0.05,
                        help="share of logs at WARN/ERROR/FATAL (forwarded to the vectorizer)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--lag-bound-seconds", type=float, default=5.0)
    parser.add_argument("--dashboard-every", type=float, default=5.0,
                        help="seconds between two Explore page-load bursts (0: none)")
    parser.add_argument("--dashboard-target-ms", type=float, default=1000.0)
    parser.add_argument("--keep-going", action="store_true", help="run every step, even after one fails")
    parser.add_argument("--generator-process", action="store_true",
                        help="the generator in a process of its own (LOGPIPE_DEV_GENERATOR_PROCESS), "
                             "not in the services' one as `make dev` runs it")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
