"""Thin handlers: read the cluster, apply what `resources` builds, write status.

create/update/resume reconcile the same way (create-or-patch, a rerun changes nothing); a
timer reads consumer lag, scales, and re-applies children that drifted; a finalizer removes
the pipeline's data under `deletionPolicy: Delete` only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any

import kopf

from logpipe import schemas
from logpipe.core.lag import group_offsets
from logpipe_operator import FINALIZER, GROUP, PLURAL, VERSION, metrics, resources
from logpipe_operator.kube import Kube
from logpipe_operator.settings import Settings
from logpipe_operator.status import Condition, changed, consumer_summary, merge_conditions, now_iso, phase

log = logging.getLogger(__name__)
SETTINGS = Settings()
RESOURCE = (GROUP, VERSION, PLURAL)
_connection: list[Any] = []  # the credentials the login handler obtained (one operator per process)


@kopf.on.startup(id="configure")
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    # Kopf posts the object logger's lines as events (children created or updated, handler
    # failures); condition changes and scaling go through `_event` with their own reason and
    # are logged on the module logger, so each shows once.
    settings.posting.enabled = SETTINGS.post_events
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    memo.kube = None


@kopf.on.login(id="login")
def login(**kwargs: Any):
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        _connection[:] = [info]
    return info


@kopf.on.cleanup(id="close")
async def close(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "kube", None) is not None:
        await memo.kube.close()


def _kube(memo: kopf.Memo) -> Kube:
    if getattr(memo, "kube", None) is None:
        if not _connection:
            raise kopf.TemporaryError("not logged in to the Kubernetes API yet", delay=1)
        memo.kube = Kube(_connection[0])
    return memo.kube


def _event(body: kopf.Body, normal: bool, reason: str, message: str) -> None:
    """A Kubernetes event on the LogPipeline (kubectl describe lp shows them)."""
    if SETTINGS.post_events:
        (kopf.info if normal else kopf.warn)(body, reason=reason, message=message)


def _backoff(retry: int) -> float:
    return min(SETTINGS.retry_max_seconds, SETTINGS.retry_base_seconds * (2 ** retry))


async def _bootstrap(kube: Kube, pipeline: resources.Pipeline) -> str:
    if pipeline.bootstrap_secret:
        return await kube.secret_value(pipeline.namespace, *pipeline.bootstrap_secret)
    return pipeline.bootstrap_servers


async def _optional_secret(kube: Kube, namespace: str, ref: tuple[str, str] | None) -> str:
    return await kube.secret_value(namespace, *ref) if ref else ""


def _cause(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return (text if text.startswith(name) else f"{name}: {text}")[:500]


async def _topics(kube: Kube, pipeline: resources.Pipeline) -> tuple[Condition, dict]:
    try:
        bootstrap = await _bootstrap(kube, pipeline)
        result = await asyncio.wait_for(schemas.ensure_topics_for(
            bootstrap, pipeline.topic_prefix, pipeline.partitions, pipeline.replication_factor,
            pipeline.retention_seconds * 1000, timeout_s=SETTINGS.kafka_timeout_seconds),
            SETTINGS.kafka_timeout_seconds * 3)
    except schemas.PartitionGrowthError as exc:
        return Condition("TopicsReady", False, "PartitionGrowthRefused", str(exc)), {}
    except LookupError as exc:
        return Condition("TopicsReady", False, "SecretMissing", str(exc)), {}
    except Exception as exc:  # noqa: BLE001 - any broker failure is a condition, not a crash
        return Condition("TopicsReady", False, "BrokerUnavailable", _cause(exc)), {}
    summary = {"count": len(result["partitions"]), "prefix": pipeline.topic_prefix,
               "partitions": result["partitions"]}
    return Condition("TopicsReady", True, "TopicsPresent",
                     f"{len(result['topics'])} topics with prefix {pipeline.topic_prefix!r}"), summary


async def _storage(kube: Kube, pipeline: resources.Pipeline) -> Condition:
    try:
        dsn = await kube.secret_value(pipeline.namespace, *pipeline.dsn_secret)
        await schemas.ensure_storage_for(dsn, pipeline.database, pipeline.ttl_days)
    except LookupError as exc:
        return Condition("StorageReady", False, "SecretMissing", str(exc))
    except Exception as exc:  # noqa: BLE001
        return Condition("StorageReady", False, "StorageUnavailable", _cause(exc))
    return Condition("StorageReady", True, "SchemaApplied",
                     f"database {pipeline.database}, TTL {pipeline.ttl_days} days")


async def _collection(kube: Kube, pipeline: resources.Pipeline) -> Condition:
    try:
        api_key = await _optional_secret(kube, pipeline.namespace, pipeline.qdrant_api_key_secret)
        await schemas.ensure_collection_for(pipeline.qdrant_url, pipeline.collection, SETTINGS.data_dir,
                                            pipeline.dimension, api_key)
    except LookupError as exc:
        return Condition("CollectionReady", False, "SecretMissing", str(exc))
    except Exception as exc:  # noqa: BLE001
        return Condition("CollectionReady", False, "CollectionUnavailable", _cause(exc))
    return Condition("CollectionReady", True, "CollectionPresent",
                     f"collection {pipeline.collection} ({pipeline.dimension} dimensions)")


async def _children(kube: Kube, pipeline: resources.Pipeline, body: kopf.Body, logger) -> list[Condition]:
    """Apply every child; remove the ones the spec no longer wants (KEDA off, analysis off)."""
    applied: dict[str, str] = {}
    try:
        network = (resources.NetworkRules(SETTINGS.metrics_namespace_selector, SETTINGS.metrics_pod_selector)
                   if SETTINGS.network_policies else None)
        for desired in resources.desired_objects(pipeline, network):
            kopf.adopt(desired, owner=body)
            keep = ("replicas",) if desired["kind"] == "Deployment" else ()
            outcome, _ = await kube.apply(desired, keep=keep)
            applied[f"{desired['kind']}/{desired['metadata']['name']}"] = outcome
            if outcome != "unchanged":
                logger.info(f"{desired['kind']} {desired['metadata']['name']} {outcome}")
        if pipeline.scaler != "keda":
            for component in resources.COMPONENTS:
                await kube.delete("keda.sh/v1alpha1", "ScaledObject", pipeline.namespace,
                                  pipeline.child_name(component))
        if network is None:
            for component in resources.COMPONENTS:
                await kube.delete("networking.k8s.io/v1", "NetworkPolicy", pipeline.namespace,
                                  pipeline.child_name(component))
        if not pipeline.analysis_enabled:
            await kube.delete("batch/v1", "CronJob", pipeline.namespace, pipeline.child_name("analysis"))
    except Exception as exc:  # noqa: BLE001
        failed = Condition("ConsumersReady", False, "ApplyFailed", _cause(exc))
        return [failed, Condition("AnalysisScheduled", False, "ApplyFailed", _cause(exc))]
    scaler = "KEDA ScaledObjects" if pipeline.scaler == "keda" else "the operator's lag scaler"
    consumers = Condition("ConsumersReady", True, "DeploymentsApplied",
                          f"ingest and vectorizer Deployments and Services applied, scaled by {scaler}")
    if pipeline.analysis_enabled:
        analysis = Condition("AnalysisScheduled", True, "CronJobApplied",
                             f"logpipe analyze at {pipeline.schedule!r} over {pipeline.window_hours}h")
    else:
        analysis = Condition("AnalysisScheduled", True, "Disabled", "analysis.enabled is false: no CronJob")
    return [consumers, analysis]


@kopf.on.resume(*RESOURCE, id="reconcile-resume")
@kopf.on.update(*RESOURCE, id="reconcile-update", field="spec")
@kopf.on.create(*RESOURCE, id="reconcile-create")
async def reconcile(body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, meta: kopf.Meta,
                    status: kopf.Status, patch: kopf.Patch, memo: kopf.Memo, retry: int, logger, **_: Any) -> None:
    started = time.perf_counter()
    try:
        pipeline = resources.parse(name, namespace, dict(spec))
    except ValueError as exc:
        metrics.RECONCILES.labels("invalid").inc()
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc
    kube = _kube(memo)
    topics, topic_summary = await _topics(kube, pipeline)
    conditions = [topics]
    conditions.append(await _storage(kube, pipeline))
    conditions.append(await _collection(kube, pipeline))
    conditions.extend(await _children(kube, pipeline, body, logger))

    previous = list(status.get("conditions") or [])
    merged = merge_conditions(previous, conditions, meta.get("generation"))
    patch.status["conditions"] = merged
    patch.status["observedGeneration"] = meta.get("generation")
    patch.status["phase"] = phase(merged)
    patch.status["pipeline"] = pipeline.id
    if topic_summary:
        patch.status["topics"] = topic_summary
    for item in changed(previous, merged):
        (log.info if item["status"] == "True" else log.warning)(
            f"{pipeline.id}: {item['type']} is {item['status']} ({item['reason']}): {item['message']}")
        _event(body, item["status"] == "True", item["reason"], f"{item['type']}: {item['message']}")
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    failed = [condition for condition in conditions if not condition.ok]
    for condition in failed:
        metrics.ERRORS.labels(condition.type).inc()
    if failed:
        metrics.RECONCILES.labels("retry").inc()
        raise kopf.TemporaryError("; ".join(f"{c.type}: {c.message}" for c in failed), delay=_backoff(retry))
    metrics.RECONCILES.labels("ok").inc()


def _seconds_since(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - moment).total_seconds()


@kopf.timer(*RESOURCE, id="scale", interval=SETTINGS.scale_interval_seconds,
            backoff=SETTINGS.scale_interval_seconds)
async def scale(body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, status: kopf.Status,
                patch: kopf.Patch, memo: kopf.Memo, logger, **_: Any) -> None:
    """Re-apply drifted children; read each consumer group's lag, scale its Deployment; report
    lag, replicas and the last analysis."""
    try:
        pipeline = resources.parse(name, namespace, dict(spec))
    except ValueError:
        return
    kube = _kube(memo)
    # Drift: a child edited or deleted by hand is put back (create-or-patch writes nothing
    # when the live object already holds the desired values; replicas stay the scaler's).
    for drift in await _children(kube, pipeline, body, logger):
        if not drift.ok:
            log.warning(f"{pipeline.id}: children not re-applied: {drift.message}")
            break
    try:
        bootstrap = await _bootstrap(kube, pipeline)
    except LookupError as exc:
        log.warning(f"{pipeline.id}: lag not read: {exc}")
        return
    reported = dict(status.get("consumers") or {})
    for component in resources.COMPONENTS:
        consumer = pipeline.consumers[component]
        before = dict(reported.get(component) or {})
        deployment = await kube.get("apps/v1", "Deployment", namespace, pipeline.child_name(component))
        if deployment is None:
            continue  # the reconcile has not created it yet
        current = int((deployment.get("spec") or {}).get("replicas") or 0)
        try:
            offsets = await asyncio.wait_for(
                group_offsets(bootstrap, pipeline.group_id(component),
                              getattr(pipeline.topics, resources.TOPIC_OF[component]),
                              SETTINGS.kafka_timeout_seconds), SETTINGS.kafka_timeout_seconds * 2)
        except Exception as exc:  # noqa: BLE001 - the broker being down must not stop the timer
            log.warning(f"{pipeline.id}: lag of {component} not read: {_cause(exc)}")
            reported[component] = dict(before, replicas=current, lagError=_cause(exc),
                                       summary=consumer_summary(current, None))
            continue
        lag = offsets.lag
        observed = time.time()
        # The incoming rate from the growth of the topic's end offsets since the last reading.
        rate = resources.incoming_rate(offsets.end_offsets, observed, before.get("endOffsets"),
                                       before.get("observedAt"))
        metrics.LAG.labels(pipeline.id, component).set(lag)
        entry = dict(before, replicas=current, lag=lag, lagError=None, endOffsets=offsets.end_offsets,
                     observedAt=observed, partitions=offsets.partitions,
                     ratePerSecond=None if rate is None else round(rate, 1),
                     summary=consumer_summary(current, lag))
        if rate is not None:
            metrics.RATE.labels(pipeline.id, component).set(rate)
        if pipeline.scaler == "operator":
            decision = resources.decide_scale(current, lag, consumer, _seconds_since(before.get("lastScaleTime")),
                                              rate=rate, partitions=offsets.partitions or None)
            entry["lastDecision"] = decision.reason
            if decision.changed(current):
                await kube.patch("apps/v1", "Deployment", namespace, pipeline.child_name(component),
                                 {"spec": {"replicas": decision.replicas}})
                direction = "up" if decision.replicas > current else "down"
                metrics.SCALING.labels(component, direction).inc()
                capacity = (f", {'?' if rate is None else round(rate)} records/s at "
                            f"{consumer.records_per_second_per_replica} per replica"
                            if consumer.records_per_second_per_replica else "")
                message = (f"{component} scaled {direction} from {current} to {decision.replicas} replicas "
                           f"(lag {lag}, target {consumer.target_lag_per_replica} per replica{capacity}; "
                           f"{decision.reason})")
                log.info(f"{pipeline.id}: {message}")
                _event(body, True, f"Scaled{direction.capitalize()}", message)
                entry.update(replicas=decision.replicas, lastScaleTime=now_iso(),
                             summary=consumer_summary(decision.replicas, lag))
        reported[component] = entry
    if reported:
        patch.status["consumers"] = reported
    cronjob = await kube.get("batch/v1", "CronJob", namespace, pipeline.child_name("analysis"))
    last = ((cronjob or {}).get("status") or {}).get("lastSuccessfulTime")
    if last:
        patch.status["lastAnalysisTime"] = last


@kopf.on.delete(*RESOURCE, id="cleanup")
async def cleanup(body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, memo: kopf.Memo,
                  retry: int, logger, **_: Any) -> None:
    """Children go (their owner references would take them too); data goes only under Delete."""
    pipeline = resources.parse(name, namespace, dict(spec))
    kube = _kube(memo)
    for desired in resources.desired_objects(pipeline):
        await kube.delete(desired["apiVersion"], desired["kind"], namespace, desired["metadata"]["name"])
    if pipeline.deletion_policy != "Delete":
        logger.info(f"deletionPolicy Retain: topics {pipeline.topic_prefix}*, rows of {pipeline.id} "
                    f"and collection {pipeline.collection} are kept")
        return
    try:
        done = await schemas.drop_pipeline(
            bootstrap_servers=await _bootstrap(kube, pipeline), prefix=pipeline.topic_prefix,
            clickhouse_dsn=await kube.secret_value(namespace, *pipeline.dsn_secret), database=pipeline.database,
            pipeline=pipeline.id, qdrant_url=pipeline.qdrant_url, collection=pipeline.collection,
            data_dir=SETTINGS.data_dir,
            api_key=await _optional_secret(kube, namespace, pipeline.qdrant_api_key_secret),
            timeout_s=SETTINGS.kafka_timeout_seconds)
    except Exception as exc:  # noqa: BLE001 - keep the finalizer and retry: the data must go
        metrics.ERRORS.labels("Delete").inc()
        _event(body, False, "DeleteFailed", _cause(exc))
        raise kopf.TemporaryError(f"deleting the pipeline's data failed: {_cause(exc)}",
                                  delay=_backoff(retry)) from exc
    logger.info(f"deletionPolicy Delete: removed {done}")
