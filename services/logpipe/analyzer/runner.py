"""One analysis run, end to end: ClickHouse aggregates -> baselines -> anomalies -> clusters ->
co-occurrence -> deterministic report -> LLM (optional) -> SQL. Blocking: the service calls
it off the event loop; `logpipe analyze` calls it directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

import numpy as np
import sqlalchemy as sa
from sqlmodel import select

from logpipe.ai.llm import LLM, LLMError, NoLLM, create_llm
from logpipe.analyzer.anomalies import AnomalyFinding, bucket_fractions, find_anomalies
from logpipe.analyzer.baselines import VOLUME, BaselineKey, BaselineStat, update_baselines
from logpipe.analyzer.correlation import build_clusters, cluster_by_similarity, find_bursts, group_related
from logpipe.analyzer.history import Expectations, History
from logpipe.analyzer.llm_report import (REPORT_SCHEMA, SYSTEM_PROMPT, known_pattern_ids, llm_facts, llm_prompt,
                                         merge_llm_answer, validate_llm_answer)
from logpipe.analyzer.markdown import render_markdown
from logpipe.analyzer.novelty import summarize_novel_errors
from logpipe.analyzer.report import assemble_report
from logpipe.analyzer.trends import gone_patterns
from logpipe.analyzer.thresholds import SEVERITY_RANK, Thresholds
from logpipe.analyzer.windows import HOUR, iso, parse_time, utc, window_buckets
from logpipe.core.novel_errors import NovelErrors, read_novel_errors
from logpipe.analyzer.queries import AnalysisQueries
from logpipe.analyzer.settings import Settings
from logpipe.core import tracing
from logpipe.core.metrics import counter, histogram
from logpipe.core.topics import Topics
from logpipe.stores import sql
from logpipe.stores.clickhouse import ClickHouseStore
from logpipe.stores.sql import Anomaly, Baseline, ErrorPattern, NightlyReport

log = logging.getLogger(__name__)

RUNS = counter("logpipe_analyzer_runs_total", "Analysis runs by outcome", ("status",))
ANOMALIES = counter("logpipe_analyzer_anomalies_total", "Anomalies found", ("severity", "kind"))
RUN_SECONDS = histogram("logpipe_analyzer_run_seconds", "Analysis time of a run, LLM excluded",
                        buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300))
LLM_SECONDS = histogram("logpipe_analyzer_llm_seconds", "LLM time of a run",
                        buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600))

Embed = Callable[[Sequence[str]], np.ndarray]
# How many patterns get embedded for clustering and get a per-minute series for bursts.
CLUSTER_PATTERNS = 500
BURST_PATTERNS = 200
TEMPLATE_CACHE_SIZE = 50_000


class RunFailed(RuntimeError):
    pass


def thresholds_from(settings: Settings) -> Thresholds:
    return Thresholds(
        z_low=settings.z_low, z_medium=settings.z_medium, z_high=settings.z_high, z_critical=settings.z_critical,
        min_ratio=settings.min_ratio, min_count=settings.min_count,
        min_baseline_samples=settings.min_baseline_samples, quiet_hours=settings.quiet_hours,
        similarity=settings.similarity_threshold)


def llm_from(settings: Settings) -> LLM:
    return create_llm(settings.llm_backend, model=settings.llm_model, ollama_host=settings.ollama_host,
                      openai_base_url=settings.openai_base_url,
                      openai_api_key=settings.openai_api_key.get_secret_value(),
                      gguf_path=settings.gguf_path, timeout=settings.llm_timeout_s)


def embed_from(settings: Settings) -> Embed:
    """The embedding model for templates, loaded on first use (it takes seconds)."""
    from logpipe.ai import embeddings

    state: dict[str, Any] = {}
    lock = threading.Lock()
    # Templates barely change from one night to the next: each is embedded once per process.
    known: dict[str, np.ndarray] = {}

    def embed(texts: Sequence[str]) -> np.ndarray:
        with lock:
            if "backend" not in state:
                if settings.embeddings_url:
                    state["backend"] = embeddings.TeiBackend(settings.embeddings_url)
                else:
                    state["backend"] = embeddings.local_backend(settings.data_dir, prefer=settings.embedding_runtime,
                                                                export_dir=settings.onnx_dir)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            if len(known) + len(missing) > TEMPLATE_CACHE_SIZE:
                known.clear()
            known.update(zip(missing, state["backend"].embed(missing)))
        return np.stack([known[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    return embed


class Analyzer:
    """Creates runs, executes them one at a time (baselines are read-modify-write), reads reports."""

    def __init__(self, settings: Settings, store: ClickHouseStore, engine: sa.engine.Engine,
                 embed: Embed | None = None, llm: LLM | None = None,
                 novel_reader: Callable[[datetime, datetime], NovelErrors] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.embed = embed
        self._llm = llm
        self.novel_reader = novel_reader
        self.thresholds = thresholds_from(settings)
        self._run_lock = threading.Lock()

    def llm(self) -> LLM:
        # Chosen per run: with `auto`, an Ollama started after the analyzer is still found.
        return self._llm if self._llm is not None else llm_from(self.settings)

    # --- runs ---------------------------------------------------------------------------

    def create_run(self, window_hours: float | None = None, services: Sequence[str] | None = None,
                   end: datetime | None = None, trigger: str = "api") -> NightlyReport:
        hours = float(window_hours or self.settings.window_hours)
        end = utc(end) if end else datetime.now(timezone.utc)
        row = NightlyReport(pipeline=self.settings.pipeline, status="pending", trigger=trigger,
                            window_start=end - timedelta(hours=hours), window_end=end, window_hours=hours,
                            services=sorted(set(services or [])))
        with sql.session(self.engine) as db:
            db.add(row)
            db.commit()
        return row

    def run(self, window_hours: float | None = None, services: Sequence[str] | None = None,
            end: datetime | None = None, trigger: str = "cli") -> NightlyReport:
        row = self.create_run(window_hours, services, end, trigger)
        return self.execute(row.id)

    @tracing.traced("analyzer run")
    def execute(self, report_id: str) -> NightlyReport:
        with self._run_lock:
            with sql.session(self.engine) as db:
                row = db.get(NightlyReport, report_id)
                if row is None:
                    raise RunFailed(f"no run {report_id}")
                row.status, row.started_at = "running", sql.utcnow()
                db.add(row)
                db.commit()
            try:
                report, anomalies, baseline_changes = self._analyse(row)
            except Exception as exc:
                log.exception("analysis run failed", extra={"report_id": report_id})
                RUNS.labels("failed").inc()
                with sql.session(self.engine) as db:
                    failed = db.get(NightlyReport, report_id)
                    failed.status, failed.finished_at = "failed", sql.utcnow()
                    failed.error = f"{type(exc).__name__}: {exc}"[:2000]
                    db.add(failed)
                    db.commit()
                    return failed
            saved = self._save(report_id, report, anomalies, baseline_changes)
            RUNS.labels("completed").inc()
            RUN_SECONDS.observe(report["timings"]["analysis_seconds"])
            LLM_SECONDS.observe(report["timings"]["llm_seconds"])
            for anomaly in anomalies:
                ANOMALIES.labels(anomaly.severity, anomaly.kind).inc()
            return saved

    def _analyse(self, row: NightlyReport):
        settings, thresholds = self.settings, self.thresholds
        started = time.perf_counter()
        start, end = utc(row.window_start), utc(row.window_end)
        services = list(row.services or [])
        queries = AnalysisQueries(self.store, row.pipeline, start, end, services)
        data = queries.window(settings.max_patterns)
        patterns = data.patterns
        pattern_ids = list(patterns)
        templates = queries.templates(pattern_ids)
        for pid, info in patterns.items():
            info["template"] = templates.get(pid) or info["example"]
        lookback = timedelta(days=settings.new_pattern_lookback_days)
        # "New" means first seen inside this window, by the logs themselves: whichever run saw
        # it first (and what the learnt baselines hold) must not change the answer.
        seen = queries.seen_before(pattern_ids, lookback)
        # The first analysis of a pipeline has nothing to compare with: nothing is "new" yet.
        history = bool(seen) or queries.has_history(lookback)
        for pid, info in patterns.items():
            info["is_new"] = history and pid not in seen
        new_patterns = {pid: info for pid, info in patterns.items() if info["is_new"]}
        buckets = window_buckets(start, end)
        fractions = bucket_fractions(buckets, start, end)
        baselines = self.load_baselines(row.pipeline)
        past, covered_from = queries.history(settings.baseline_days)
        expectations = Expectations(
            History(past, covered_from, start, buckets, settings.baseline_days, thresholds.min_baseline_samples),
            baselines, start, thresholds.min_baseline_samples)
        # A pipeline with nothing before this window began inside it: the hours before its first
        # log are unknown, not zero (a fresh platform is not a volume spike over nothing).
        known_from = None
        if covered_from is None:
            first = [hour for counts in data.volume.values() for hour, count in counts.items() if count]
            known_from = min(first) + HOUR if first else None
        query_seconds = time.perf_counter() - started

        anomalies = find_anomalies(data.hourly, data.volume, expectations, buckets, new_patterns, thresholds,
                                   services or None, {p: i["template"] for p, i in patterns.items()}, (start, end),
                                   known_from)
        gone = gone_patterns(expectations, pattern_ids, buckets, fractions, thresholds, services or None)
        if gone:
            gone_ids = sorted(gone, key=lambda p: (-gone[p]["expected"], p))[:settings.top_patterns]
            gone = {pid: gone[pid] for pid in gone_ids}
            known_before = queries.examples(gone_ids, settings.baseline_days)
            gone_templates = queries.templates(gone_ids)
            for pid, info in gone.items():
                info.update(known_before.get(pid, {"example": "", "level": "ERROR"}))
                info["template"] = gone_templates.get(pid) or info.get("example") or f"pattern {pid}"

        embed_started = time.perf_counter()
        clustered = pattern_ids[:CLUSTER_PATTERNS]
        clusters_error = ""
        groups: list[list[str]] = [[pid] for pid in clustered]
        if self.embed is not None and len(clustered) > 1:
            try:
                vectors = self.embed([patterns[pid]["template"] for pid in clustered])
                groups = cluster_by_similarity(clustered, vectors, thresholds.similarity)
            except Exception as exc:  # noqa: BLE001 - clusters are an extra; the report goes on without them
                log.warning("embedding templates failed; clusters are singletons", exc_info=True)
                clusters_error = f"{type(exc).__name__}: {exc}"[:500]
        elif self.embed is None:
            clusters_error = "no embedding model configured"
        clusters = build_clusters(groups, patterns)
        embed_seconds = time.perf_counter() - embed_started

        novel = self._novel_errors(start, end, services)
        novel_errors = summarize_novel_errors(novel.events, patterns, novel.error, novel.truncated)

        trace_pairs = queries.trace_pairs()
        burst_pairs = self._bursts(queries, pattern_ids[:BURST_PATTERNS], start, end, thresholds)
        related = group_related(anomalies, trace_pairs)

        report = assemble_report(
            report_id=row.id, pipeline=row.pipeline, window_start=start, window_end=end, services=services,
            totals={**data.totals, "patterns": len(patterns)}, patterns=patterns, clusters=clusters,
            anomalies=anomalies, trace_pairs=trace_pairs, burst_pairs=burst_pairs, baselines=expectations,
            buckets=buckets, service_errors=data.service_errors, thresholds=thresholds, top=settings.top_patterns,
            novel_errors=novel_errors, fractions=fractions, related=related,
            gone=[gone[pid] for pid in gone])
        if clusters_error:
            report["clusters_error"] = clusters_error
        report["has_history"] = history
        if known_from is not None:
            # Shown with the anomalies: the window was judged only from here on, and not at all
            # with fewer than three whole hours since.
            report["judged_from"] = iso(max(known_from, start))

        # Learn this window only after judging it against what was known before.
        skip = {(a.service, a.pattern_id, hour.bucket) for a in anomalies if a.kind != "new_pattern"
                and SEVERITY_RANK[a.severity] >= 2 for hour in a.hourly}
        observed = dict(data.hourly)
        observed.update({(svc, VOLUME): counts for svc, counts in data.volume.items()})
        baseline_changes = update_baselines(baselines, observed, buckets, services or None, skip)
        analysis_seconds = time.perf_counter() - started

        llm_seconds = self._ask_llm(report)
        report["status"] = "completed"
        report["generated_at"] = iso(datetime.now(timezone.utc))
        report["timings"] = {"query_seconds": round(query_seconds, 3), "embedding_seconds": round(embed_seconds, 3),
                             "analysis_seconds": round(analysis_seconds, 3), "llm_seconds": round(llm_seconds, 3)}
        report["embedding_similarity_threshold"] = thresholds.similarity
        return report, anomalies, baseline_changes

    @tracing.traced("analyzer novel errors")
    def _novel_errors(self, start: datetime, end: datetime, services: list[str]) -> NovelErrors:
        if self.novel_reader is not None:
            found = self.novel_reader(start, end)
        elif not self.settings.novel_errors_enabled:
            return NovelErrors(error="disabled (ANALYZER_NOVEL_ERRORS_ENABLED=false)")
        else:
            topic = Topics(self.settings.topic_prefix).novel_errors
            found = asyncio.run(read_novel_errors(self.settings.kafka_bootstrap_servers, topic, start, end,
                                                  timeout_s=self.settings.novel_errors_timeout_s))
            if found.error:
                log.warning("novel errors not read: %s", found.error)
        if services:
            found.events = [e for e in found.events if e.get("service") in services]
        return found

    @tracing.traced("analyzer bursts")
    def _bursts(self, queries: AnalysisQueries, pattern_ids: list[str], start: datetime, end: datetime,
                thresholds: Thresholds) -> list[dict[str, Any]]:
        series = queries.minute_series(pattern_ids)
        if not series:
            return []
        first_minute = start.replace(second=0, microsecond=0)
        minutes = int((end - first_minute).total_seconds() // 60) + 1
        index = {pid: i for i, pid in enumerate(pattern_ids)}
        matrix = np.zeros((len(pattern_ids), minutes), dtype=np.float32)
        for pid, minute, count in series:
            column = int((minute - first_minute).total_seconds() // 60)
            if pid in index and 0 <= column < minutes:
                matrix[index[pid], column] = count
        timeline = [first_minute + timedelta(minutes=m) for m in range(minutes)]
        return find_bursts(pattern_ids, timeline, matrix, thresholds)

    @tracing.traced("analyzer llm report")
    def _ask_llm(self, report: dict[str, Any]) -> float:
        """Fill the summary, insights and recommendations from the LLM where it gives grounded
        claims; every failure leaves the deterministic parts in place. Returns LLM seconds."""
        started = time.perf_counter()
        info: dict[str, Any] = {"backend": "none", "model": None, "error": "", "dropped_claims": 0,
                                "seconds": 0.0, "generation_seconds": None}
        report["llm"] = info
        try:
            llm = self.llm()
        except (LLMError, ValueError) as exc:
            info["error"] = str(exc)
            return time.perf_counter() - started
        info["backend"] = llm.name.split(":")[0]
        if isinstance(llm, NoLLM):
            info["error"] = llm.reason
            return time.perf_counter() - started
        facts = llm_facts(report)
        try:
            result = llm.complete_json(SYSTEM_PROMPT, llm_prompt(facts), REPORT_SCHEMA)
        except LLMError as exc:
            log.warning("LLM failed; the report stays deterministic: %s", exc)
            info["error"] = str(exc)[:500]
            info["seconds"] = round(time.perf_counter() - started, 3)
            return time.perf_counter() - started
        kept, dropped = validate_llm_answer(result.data, known_pattern_ids(facts),
                                                    {c["cluster_id"] for c in report["clusters"]}, result.model)
        merge_llm_answer(report, kept, result.model)
        info.update(model=result.model, dropped_claims=dropped, seconds=round(result.seconds, 3),
                    generation_seconds=result.generation_seconds, usage=result.usage)
        return time.perf_counter() - started

    # --- storage ------------------------------------------------------------------------

    def load_baselines(self, pipeline: str) -> dict[BaselineKey, BaselineStat]:
        with sql.session(self.engine) as db:
            rows = db.exec(select(Baseline).where(Baseline.pipeline == pipeline)).all()
        return {(r.service, r.pattern_id, r.hour_of_day): BaselineStat(r.samples, r.mean, r.m2, r.last_bucket)
                for r in rows}

    @tracing.traced("analyzer save")
    def _save(self, report_id: str, report: dict[str, Any], anomalies: list[AnomalyFinding],
              baseline_changes: dict[BaselineKey, BaselineStat]) -> NightlyReport:
        markdown = render_markdown(report)
        pipeline = report["pipeline"]
        now = sql.utcnow()
        with sql.session(self.engine) as db:
            row = db.get(NightlyReport, report_id)
            row.status, row.finished_at = "completed", now
            row.summary = report["summary"]["text"]
            row.summary_model = report["models"]["summary"]
            row.llm_model = report["llm"].get("model") or ""
            row.error = ""
            row.total_logs = report["totals"]["logs"]
            row.total_errors = report["totals"]["errors"]
            row.anomaly_count = len(anomalies)
            row.analysis_seconds = report["timings"]["analysis_seconds"]
            row.llm_seconds = report["timings"]["llm_seconds"]
            row.report = report
            row.markdown = markdown
            db.add(row)
            stored = {p["pattern_id"]: p for p in [*report["top_patterns"], *report["new_patterns"]]}
            for p in stored.values():
                db.add(ErrorPattern(report_id=report_id, pattern_id=p["pattern_id"], template=p["template"],
                                    example=p["example"], level=p["level"], count=p["count"], services=p["services"],
                                    first_seen=parse_time(p["first_seen"]),
                                    last_seen=parse_time(p["last_seen"]), expected=p["expected"],
                                    trend=p["trend"], is_new=p["is_new"], cluster_id=p["cluster_id"]))
            for a in anomalies:
                db.add(Anomaly(report_id=report_id, kind=a.kind, service=a.service, pattern_id=a.pattern_id,
                               bucket=a.bucket, observed=a.observed, expected=a.expected, stddev=a.stddev,
                               z_score=a.z_score, severity=a.severity, description=a.description,
                               incident_id=a.incident_id, start=a.start, end=a.end, peak=a.bucket,
                               hours=a.hours, observed_total=a.observed_total, expected_total=a.expected_total,
                               excess=a.excess, ongoing=a.ongoing, related_group=a.related_group))
            db.flush()
            self._upsert_baselines(db, pipeline, baseline_changes, now)
            db.commit()
            db.refresh(row)
        return row

    @staticmethod
    def _upsert_baselines(db, pipeline: str, changes: dict[BaselineKey, BaselineStat],
                          now: datetime) -> None:
        if not changes:
            return
        dialect = db.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - only the two supported backends
            raise RunFailed(f"unsupported SQL backend {dialect}")
        values = [{"pipeline": pipeline, "service": svc, "pattern_id": pid, "hour_of_day": hour,
                   "samples": stat.samples, "mean": stat.mean, "m2": stat.m2, "last_bucket": stat.last_bucket,
                   "updated_at": now} for (svc, pid, hour), stat in changes.items()]
        statement = insert(Baseline)
        statement = statement.on_conflict_do_update(
            index_elements=["pipeline", "service", "pattern_id", "hour_of_day"],
            set_={name: statement.excluded[name] for name in ("samples", "mean", "m2", "last_bucket", "updated_at")})
        for start in range(0, len(values), 2000):
            db.execute(statement, values[start:start + 2000])

    # --- reading ------------------------------------------------------------------------

    def get(self, report_id: str) -> NightlyReport | None:
        with sql.session(self.engine) as db:
            return db.get(NightlyReport, report_id)

    def latest(self) -> NightlyReport | None:
        with sql.session(self.engine) as db:
            return db.exec(select(NightlyReport).where(NightlyReport.pipeline == self.settings.pipeline,
                                                       NightlyReport.status == "completed")
                           .order_by(NightlyReport.created_at.desc()).limit(1)).first()

    def list(self, date_from: datetime | None = None, date_to: datetime | None = None,
             limit: int = 100) -> list[NightlyReport]:
        """Reports whose window ends in [date_from, date_to): a nightly report belongs to the
        night it covers, whenever it was run."""
        query = select(NightlyReport).where(NightlyReport.pipeline == self.settings.pipeline)
        if date_from is not None:
            query = query.where(NightlyReport.window_end >= date_from)
        if date_to is not None:
            query = query.where(NightlyReport.window_end < date_to)
        with sql.session(self.engine) as db:
            return list(db.exec(query.order_by(NightlyReport.created_at.desc()).limit(limit)).all())

    def anomalies(self, report_id: str) -> list[Anomaly]:
        with sql.session(self.engine) as db:
            return list(db.exec(select(Anomaly).where(Anomaly.report_id == report_id)).all())
