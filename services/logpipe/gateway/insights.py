"""Reads of what the analyzer wrote to the SQL store: reports, their patterns, anomalies.

The tables are defined once in `stores/sql.py`; the gateway only reads them (and the
anomaly poller turns new rows into /ws/events messages).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from logpipe.core.record import format_timestamp
from logpipe.gateway.service import Fanout
from logpipe.stores.sql import Anomaly, ErrorPattern, NightlyReport

log = logging.getLogger(__name__)

SEVERITIES = ("low", "medium", "high", "critical")
REPORT_SUMMARY_FIELDS = ("id", "pipeline", "status", "trigger", "created_at", "started_at", "finished_at",
                         "window_start", "window_end", "window_hours", "services", "summary", "summary_model",
                         "llm_model", "error", "total_logs", "total_errors", "anomaly_count",
                         "analysis_seconds", "llm_seconds")


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    return value


def row_dict(row: Any, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    names = fields or tuple(row.__class__.model_fields)
    return {name: _json(getattr(row, name)) for name in names}


def list_reports(engine: Engine, *, pipeline: str | None, start: datetime | None, end: datetime | None,
                 status: str | None, limit: int, offset: int) -> dict[str, Any]:
    conditions = []
    if pipeline:
        conditions.append(NightlyReport.pipeline == pipeline)
    if start:
        conditions.append(NightlyReport.window_end >= start)
    if end:
        conditions.append(NightlyReport.window_end < end)
    if status:
        conditions.append(NightlyReport.status == status)
    with Session(engine) as session:
        total = session.exec(select(sa.func.count()).select_from(NightlyReport).where(*conditions)).one()
        rows = session.exec(select(NightlyReport).where(*conditions)
                            .order_by(NightlyReport.created_at.desc(), NightlyReport.id.desc())
                            .offset(offset).limit(limit)).all()
        reports = []
        for row in rows:
            item = row_dict(row, REPORT_SUMMARY_FIELDS)
            item["report_id"] = item["id"]  # the analyzer's own API names it so
            reports.append(item)
        return {"reports": reports, "total": int(total)}


def get_report(engine: Engine, report_id: str, pipeline: str | None) -> dict[str, Any] | None:
    with Session(engine) as session:
        row = session.get(NightlyReport, report_id)
        if row is None or (pipeline and row.pipeline != pipeline):
            return None
        body = row_dict(row)
        body["report_id"] = row.id
        patterns = session.exec(select(ErrorPattern).where(ErrorPattern.report_id == report_id)
                                .order_by(ErrorPattern.count.desc())).all()
        anomalies = session.exec(select(Anomaly).where(Anomaly.report_id == report_id)
                                 .order_by(Anomaly.z_score.desc())).all()
        body["patterns"] = [row_dict(p) for p in patterns]
        body["anomalies"] = [row_dict(a) for a in anomalies]
        return body


def report_markdown(report: dict[str, Any]) -> str:
    """The report as the analyzer wrote it in Markdown; for a run that wrote none yet (pending,
    running, failed), a short page saying where it stands."""
    if report.get("markdown"):
        return report["markdown"]
    lines = [f"# logpipe report {report['id']}", "",
             f"- status: {report.get('status')}",
             f"- pipeline: {report.get('pipeline')}",
             f"- window: {report.get('window_start')} to {report.get('window_end')}"]
    if report.get("error"):
        lines.append(f"- error: {report['error']}")
    if report.get("summary"):
        lines += ["", report["summary"]]
    return "\n".join(lines) + "\n"


def list_anomalies(engine: Engine, *, pipeline: str | None, severities: list[str], services: list[str],
                   start: datetime | None, end: datetime | None, limit: int, offset: int) -> dict[str, Any]:
    when = sa.func.coalesce(Anomaly.bucket, Anomaly.created_at)
    conditions = []
    if pipeline:
        conditions.append(NightlyReport.pipeline == pipeline)
    if severities:
        conditions.append(Anomaly.severity.in_(severities))
    if services:
        conditions.append(Anomaly.service.in_(services))
    # An incident is in the range when its span [start, end) overlaps it, wherever its peak
    # (`bucket`) lies; rows written before incidents had a span fall back to their bucket.
    # Compared column by column (not on `when`) so each side keeps its UTC column type.
    spanned = sa.and_(Anomaly.start.is_not(None), Anomaly.end.is_not(None))
    if start:
        conditions.append(sa.or_(
            sa.and_(spanned, Anomaly.end > start),
            sa.and_(sa.not_(spanned), sa.or_(Anomaly.bucket >= start,
                                             sa.and_(Anomaly.bucket.is_(None), Anomaly.created_at >= start)))))
    if end:
        conditions.append(sa.or_(
            sa.and_(spanned, Anomaly.start < end),
            sa.and_(sa.not_(spanned), sa.or_(Anomaly.bucket < end,
                                             sa.and_(Anomaly.bucket.is_(None), Anomaly.created_at < end)))))
    joined = select(Anomaly, NightlyReport.pipeline).join(NightlyReport, NightlyReport.id == Anomaly.report_id)
    with Session(engine) as session:
        total = session.exec(select(sa.func.count()).select_from(Anomaly)
                             .join(NightlyReport, NightlyReport.id == Anomaly.report_id).where(*conditions)).one()
        rows = session.exec(joined.where(*conditions).order_by(when.desc(), Anomaly.id.desc())
                            .offset(offset).limit(limit)).all()
        out = []
        for anomaly, row_pipeline in rows:
            item = row_dict(anomaly)
            item["pipeline"] = row_pipeline
            out.append(item)
        return {"anomalies": out, "total": int(total)}


def anomalies_after(engine: Engine, pipeline: str, after_id: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.exec(select(Anomaly).join(NightlyReport, NightlyReport.id == Anomaly.report_id)
                            .where(Anomaly.id > after_id, NightlyReport.pipeline == pipeline)
                            .order_by(Anomaly.id).limit(1000)).all()
        return [row_dict(row) for row in rows]


def last_anomaly_id(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(sa.func.max(Anomaly.id))).one() or 0)


async def poll_anomalies(engine: Engine, pipeline: str, fanout: Fanout, interval_s: float) -> None:
    """Publish each anomaly stored after the poller started, as `{"type": "anomaly", "data": ...}`."""
    last_id = await asyncio.to_thread(last_anomaly_id, engine)
    while True:
        await asyncio.sleep(interval_s)
        try:
            rows = await asyncio.to_thread(anomalies_after, engine, pipeline, last_id)
        except Exception as exc:  # noqa: BLE001 - the SQL store may be restarting; try again
            log.warning("anomaly poll failed: %s", exc)
            continue
        for row in rows:
            last_id = max(last_id, int(row["id"]))
            fanout.publish({"type": "anomaly", "data": row})


class SemanticSearcher:
    """Embeds a query with the embedder service and searches the pipeline's vector collection."""

    def __init__(self, embedder, store) -> None:
        self.embedder = embedder
        self.store = store
        self._opened = False

    async def search(self, query: str, top_k: int, **filters):
        from logpipe.ai.search import semantic_search

        return await semantic_search(query, self, self.store, top_k, **filters)

    async def embed(self, texts):
        vectors = await self.embedder.embed(texts)
        if not self._opened:
            # The embedded engine opens a collection by its dimension; known after the first embedding.
            await self.store.aensure_collection(int(vectors.shape[1]))
            self._opened = True
        return vectors

    async def close(self) -> None:
        close = getattr(self.embedder, "close", None)
        if close is not None:
            await close()


class LazySemanticSearcher:
    """Built on the first search, so a gateway that never searches never opens the vector store."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self._searcher: SemanticSearcher | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> SemanticSearcher:
        async with self._lock:
            if self._searcher is None:
                from logpipe.ai.embeddings import HttpEmbedder
                from logpipe.stores.vectors import open_vector_store

                store = await asyncio.to_thread(open_vector_store, self.settings.qdrant_url,
                                                self.settings.qdrant_collection, self.settings.data_dir)
                self._searcher = SemanticSearcher(
                    HttpEmbedder(self.settings.embedder_url, headers=self.settings.service_headers()), store)
            return self._searcher

    async def close(self) -> None:
        if self._searcher is not None:
            await self._searcher.close()
