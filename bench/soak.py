"""Soak: the whole platform at a fixed rate for ten minutes; does memory level off?

`logpipe dev` (Tansu, then every service in one process: `logpipe run all`) runs in a child
process (bench/running.py); the platform's own generator produces `--rate` logs/s (default
20,000) for `--seconds` (default 600). Every second the bench samples each of the platform's
processes (the services' process and the broker's) from /proc: RSS and open file descriptors,
and the services' `/stats` counters: produced, stored (ingest), vectorized, so the lag is the
bench's own count (Tansu undercounts end offsets). Then it stops the generator and waits for
ingest and the vectorizer to catch up, and checks the counts: every log produced was stored or
dead-lettered, every forwarded one vectorized or dead-lettered.

Each process's RSS is also split into anonymous memory (what the process itself holds: heaps,
the embedded stores' in-memory structures) and file-backed pages (mapped files: libraries, the
embedded vector store's on-disk segments, which the kernel can drop and read again), with the
thread count, so a growth can be told apart.

Memory levels off when the RSS slope over the run's second half (least squares, MB per minute)
is at most `--max-slope-mb-per-min` (default 1.0) for every process; the first half is printed
beside it (caches and the model warm up there). Each minute's highest RSS is printed too, with
the slope of those peaks over the second half (`peaks_level_off` when it is within the same
bound for every process): a process that swings, as the services' process does while the
vector index is rebuilt and swapped in under the retention's cap, can show any slope over its
samples depending on where the swings fall; its peaks show whether the swings grow.

    .venv/bin/python bench/soak.py                          # 10 minutes at 20,000 logs/s
    .venv/bin/python bench/soak.py --seconds 120 --rate 5000

Prints one JSON line. Not part of `make test` or CI (it takes ten minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from capacity import error_rate_for_share, slope  # noqa: E402 - bench/ is not a package
from running import Platform, cpu_seconds, load_average, open_files, rss_bytes  # noqa: E402

MB = 2**20


def status_fields(pid: int) -> dict[str, float]:
    """RssAnon and RssFile (MB) and Threads from /proc/PID/status."""
    found = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile"):
                found[name] = int(value.split()[0]) / 1024
            elif name == "Threads":
                found[name] = int(value)
    return found


async def counts(client, platform: Platform) -> dict:
    async def get(service: str) -> dict:
        response = await client.get(f"{platform.url(service)}/stats")
        response.raise_for_status()
        return response.json()

    generator, ingest, vectorizer = await asyncio.gather(get("generator"), get("ingest"), get("vectorizer"))
    return {"produced": generator["produced"], "stored": ingest["written"] + ingest["replay_skipped"],
            "ingest_dlq": ingest["dlq"], "forwarded": ingest["forwarded"],
            "vectorized": vectorizer["vectorized"], "vectorizer_dlq": vectorizer["dlq"]}


def memory_summary(series: list[tuple[float, float]]) -> dict:
    """MB per minute over each half, and the values at start, middle, end and the highest; and
    the highest value of each minute with the slope of those peaks over the second half. A
    process that swings (a vector index built and swapped in every minute or so) can show any
    slope over its samples, depending on where the swings fall; its peaks show whether the
    swings themselves grow."""
    start = series[0][0]
    middle = (series[-1][0] - start) / 2
    first = [((t - start) / 60, v) for t, v in series if t - start <= middle]
    second = [((t - start) / 60, v) for t, v in series if t - start >= middle]
    peaks: dict[int, float] = {}
    for t, v in series:
        minute = int((t - start) // 60)
        peaks[minute] = max(v, peaks.get(minute, v))
    whole = [(minute, peak) for minute, peak in sorted(peaks.items()) if (minute + 1) * 60 <= series[-1][0] - start]
    late = [(minute, peak) for minute, peak in whole if minute * 60 >= middle]
    return {"start_mb": round(series[0][1], 1), "middle_mb": round(second[0][1], 1) if second else None,
            "end_mb": round(series[-1][1], 1), "max_mb": round(max(v for _, v in series), 1),
            "slope_first_half_mb_per_min": round(slope(first), 2),
            "slope_second_half_mb_per_min": round(slope(second), 2),
            "peak_each_minute_mb": [round(peak, 1) for _, peak in whole],
            "peak_slope_second_half_mb_per_min": round(slope(late), 2) if len(late) >= 3 else None}


async def main_async(args) -> dict:
    import httpx

    error_rate = error_rate_for_share(args.forwarded_share)
    result: dict = {"bench": "soak", "rate": args.rate, "seconds": args.seconds, "cpu_count": os.cpu_count(),
                    "forwarded_share_asked": args.forwarded_share, "load_average_before": load_average()}
    with Platform(partitions=args.partitions, sample_stages=False) as platform:
        async with httpx.AsyncClient(timeout=30) as client:
            generator = platform.url("generator")
            (await client.put(f"{generator}/control", json={"rate_per_second": args.rate,
                                                            "error_rate_percentage": error_rate})).raise_for_status()
            (await client.post(f"{generator}/start")).raise_for_status()
            started = time.monotonic()
            rss: dict[str, list[tuple[float, float]]] = {}
            files: dict[str, list[tuple[float, float]]] = {}
            parts: dict[str, dict[str, list[tuple[float, float]]]] = {}
            cpu_start = {}
            lags, vector_lags, loads = [], [], []
            first = await counts(client, platform)
            while time.monotonic() - started < args.seconds:
                await asyncio.sleep(1.0)
                now = time.monotonic()
                for pid, name in platform.processes().items():
                    try:
                        rss.setdefault(name, []).append((now, rss_bytes(pid) / MB))
                        files.setdefault(name, []).append((now, open_files(pid)))
                        for field, value in status_fields(pid).items():
                            parts.setdefault(name, {}).setdefault(field, []).append((now, value))
                        cpu_start.setdefault(name, (now, cpu_seconds(f"/proc/{pid}/stat")))
                    except OSError:
                        pass
                seen = await counts(client, platform)
                lags.append((now, seen["produced"] - seen["stored"] - seen["ingest_dlq"]))
                vector_lags.append((now, seen["forwarded"] - seen["vectorized"] - seen["vectorizer_dlq"]))
                if int(now - started) % 60 == 0:
                    loads.append(load_average())
            cpu_used = {}
            for pid, name in platform.processes().items():
                if name in cpu_start:
                    at, before = cpu_start[name]
                    cpu_used[name] = round((cpu_seconds(f"/proc/{pid}/stat") - before) / (time.monotonic() - at), 2)
            last = await counts(client, platform)
            wall = time.monotonic() - started
            (await client.post(f"{generator}/stop")).raise_for_status()
            # Catch up, then count: nothing lost.
            drained = await counts(client, platform)
            deadline = time.monotonic() + args.drain_seconds
            while time.monotonic() < deadline:
                drained = await counts(client, platform)
                if (drained["stored"] + drained["ingest_dlq"] >= drained["produced"]
                        and drained["vectorized"] + drained["vectorizer_dlq"] >= drained["forwarded"]):
                    break
                await asyncio.sleep(1.0)
            drain_s = args.drain_seconds - max(0.0, deadline - time.monotonic())
            vector_stats = (await client.get(f"{platform.url('vectorizer')}/stats")).json()
    rss_summary = {name: memory_summary(series) for name, series in rss.items()}
    for name, fields in parts.items():
        for field in ("RssAnon", "RssFile"):
            if field in fields:
                rss_summary[name][field.lower().replace("rss", "") + "_mb"] = memory_summary(fields[field])
        if "Threads" in fields:
            rss_summary[name]["threads"] = {"start": int(fields["Threads"][0][1]), "end": int(fields["Threads"][-1][1]),
                                            "max": int(max(v for _, v in fields["Threads"]))}
    files_summary = {name: {"start": int(series[0][1]), "end": int(series[-1][1]), "max": int(max(v for _, v in series)),
                            "slope_second_half_per_min": round(slope([((t - series[0][0]) / 60, v) for t, v in
                                                                      series[len(series) // 2:]]), 2)}
                     for name, series in files.items()}
    levels_off = all(entry["slope_second_half_mb_per_min"] <= args.max_slope_mb_per_min
                     for entry in rss_summary.values())
    peaks_level_off = all(entry["peak_slope_second_half_mb_per_min"] is not None
                          and entry["peak_slope_second_half_mb_per_min"] <= args.max_slope_mb_per_min
                          for entry in rss_summary.values())
    half = len(lags) // 2
    result.update({
        "measured_seconds": round(wall, 1),
        "produced_per_s": round((last["produced"] - first["produced"]) / wall),
        "stored_per_s": round((last["stored"] - first["stored"]) / wall),
        "vectorized_per_s": round((last["vectorized"] - first["vectorized"]) / wall),
        "ingest_lag": {"end": lags[-1][1], "max": max(v for _, v in lags),
                       "second_half_mean": round(sum(v for _, v in lags[half:]) / max(1, len(lags) - half)),
                       "second_half_growth_per_s": round(slope([(t, v) for t, v in lags[half:]]), 1)},
        "vectorizer_lag": {"end": vector_lags[-1][1], "max": max(v for _, v in vector_lags),
                           "second_half_growth_per_s": round(slope([(t, v) for t, v in vector_lags[half:]]), 1)},
        "cores_by_process": cpu_used,
        "rss": rss_summary, "open_files": files_summary,
        "memory_levels_off": levels_off, "peaks_level_off": peaks_level_off,
        "max_slope_mb_per_min": args.max_slope_mb_per_min,
        "after_drain": dict(drained, drain_seconds=round(drain_s, 1),
                            nothing_lost=(drained["stored"] + drained["ingest_dlq"] == drained["produced"]
                                          and drained["vectorized"] + drained["vectorizer_dlq"] == drained["forwarded"])),
        "load_average_each_minute": loads, "load_average_after": load_average(),
        # The vectors' retention and index builds (VECTORIZER_MAX_POINTS caps the embedded store).
        "vector_points": vector_stats.get("points"), "vector_index": vector_stats.get("index"),
        "vector_retention": vector_stats.get("retention"),
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--forwarded-share", type=float, default=0.05)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max-slope-mb-per-min", type=float, default=1.0)
    parser.add_argument("--drain-seconds", type=float, default=300)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
