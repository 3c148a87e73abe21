"""Pure builders: a LogPipeline (name, namespace, spec) in, every desired object out.

No I/O here: handlers read Secrets and the cluster, then apply what these functions return.
Owner references are added by the handlers (`kopf.adopt`), so golden objects stay plain.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from logpipe.core.topics import Topics

COMPONENTS = ("ingest", "vectorizer")
PORTS = {"ingest": 8002, "vectorizer": 8004}
TOPIC_OF = {"ingest": "raw_logs", "vectorizer": "vectorization_queue"}
MANAGED_BY = "logpipe-operator"
DEFAULT_IMAGE = "ghcr.io/logpipe/logpipe:0.1.0"
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def duration_seconds(text: str) -> int:
    """'168h', '90m', '1h30m' -> seconds."""
    match = _DURATION.match(text or "")
    if not match or not any(match.groups()):
        raise ValueError(f"invalid duration {text!r}: use hours/minutes/seconds such as 168h or 90m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class Consumer:
    min_replicas: int = 1
    max_replicas: int = 4
    target_lag_per_replica: int = 10_000
    cooldown_seconds: int = 300
    resources: dict[str, Any] = field(default_factory=dict)
    # The sizing rule (docs/operator.md, "Sizing"): records per second one replica takes, as
    # measured (bench/scaleout.py, bench/capacity.py); None: replicas follow the lag alone.
    records_per_second_per_replica: int | None = None


@dataclass(frozen=True)
class Pipeline:
    """A LogPipeline with every default applied (the CRD's defaults and the derived names)."""

    name: str
    namespace: str
    image: str
    image_pull_policy: str
    deletion_policy: str
    bootstrap_servers: str
    bootstrap_secret: tuple[str, str] | None
    topic_prefix: str
    partitions: int
    replication_factor: int
    retention_seconds: int
    dsn_secret: tuple[str, str]
    database: str
    ttl_days: int
    qdrant_url: str
    qdrant_api_key_secret: tuple[str, str] | None
    collection: str
    dimension: int
    levels: tuple[str, ...]
    scaler: str
    consumers: dict[str, Consumer]
    analysis_enabled: bool
    schedule: str
    window_hours: int
    llm_backend: str
    llm_model: str
    llm_endpoint: str
    llm_api_key_secret: tuple[str, str] | None
    # Where KEDA reads the operator's incoming-rate gauge (scaler: keda with the sizing rule).
    prometheus_address: str = ""
    # The vectors' retention (docs/vectors.md#retention); None: the vectorizer's defaults.
    vector_retention_days: int | None = None
    max_points: int | None = None

    @property
    def id(self) -> str:
        """The `pipeline` value on every row of this pipeline (and the token binding)."""
        return f"{self.namespace}/{self.name}"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def group_id(self, component: str) -> str:
        return f"{self.topic_prefix}{component}"

    def child_name(self, component: str) -> str:
        return f"{self.name}-{component}"


def _secret(ref: dict | None, default_key: str) -> tuple[str, str] | None:
    if not ref:
        return None
    return ref["name"], ref.get("key") or default_key


def _quantities(resources: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Quantities as strings, the form the API server returns (`cpu: 1` reads back as "1"),
    so create-or-patch does not see a difference on every pass."""
    return {group: {name: str(value) for name, value in (values or {}).items()}
            for group, values in resources.items()}


def parse(name: str, namespace: str, spec: dict[str, Any]) -> Pipeline:
    """Apply defaults the way the API server would, then derive names (prefix, collection)."""
    kafka = spec.get("kafka") or {}
    storage = spec.get("storage") or {}
    vectors = spec.get("vectors") or {}
    consumers = spec.get("consumers") or {}
    analysis = spec.get("analysis") or {}
    llm = analysis.get("llm") or {}
    if not kafka.get("bootstrapServers") and not kafka.get("bootstrapServersSecretRef"):
        raise ValueError("spec.kafka needs bootstrapServers or bootstrapServersSecretRef")
    if not (storage.get("dsnSecretRef") or {}).get("name"):
        raise ValueError("spec.storage.dsnSecretRef.name is required")

    def consumer(key: str) -> Consumer:
        item = consumers.get(key) or {}
        capacity = item.get("recordsPerSecondPerReplica")
        made = Consumer(int(item.get("minReplicas", 1)), int(item.get("maxReplicas", 4)),
                        int(item.get("targetLagPerReplica", 10_000)), int(item.get("cooldownSeconds", 300)),
                        _quantities(item.get("resources") or {}),
                        int(capacity) if capacity else None)
        if made.min_replicas > made.max_replicas:
            raise ValueError(f"spec.consumers.{key}: minReplicas {made.min_replicas} > maxReplicas {made.max_replicas}")
        return made

    return Pipeline(
        name=name, namespace=namespace,
        image=spec.get("image") or DEFAULT_IMAGE,
        image_pull_policy=spec.get("imagePullPolicy") or "IfNotPresent",
        deletion_policy=spec.get("deletionPolicy") or "Retain",
        bootstrap_servers=kafka.get("bootstrapServers") or "",
        bootstrap_secret=_secret(kafka.get("bootstrapServersSecretRef"), "bootstrapServers"),
        topic_prefix=kafka.get("topicPrefix") or f"{namespace}.{name}.",
        partitions=int(kafka.get("partitions", 4)),
        replication_factor=int(kafka.get("replicationFactor", 1)),
        retention_seconds=duration_seconds(kafka.get("retention") or "168h"),
        dsn_secret=_secret(storage["dsnSecretRef"], "dsn"),
        database=storage.get("database") or "logpipe",
        ttl_days=int(storage.get("ttlDays", 90)),
        qdrant_url=vectors.get("url") or "",
        qdrant_api_key_secret=_secret(vectors.get("apiKeySecretRef"), "apiKey"),
        collection=vectors.get("collection") or f"{namespace}_{name}".replace(".", "_"),
        dimension=int(vectors.get("dimension", 384)),
        levels=tuple(vectors.get("levels") or ("FATAL", "ERROR", "WARN")),
        scaler=consumers.get("scaler") or "operator",
        consumers={key: consumer(key) for key in COMPONENTS},
        analysis_enabled=bool(analysis.get("enabled", True)),
        schedule=analysis.get("schedule") or "0 2 * * *",
        window_hours=int(analysis.get("windowHours", 24)),
        llm_backend=llm.get("backend") or "none",
        llm_model=llm.get("model") or "llama3.1:8b",
        llm_endpoint=llm.get("endpoint") or "",
        llm_api_key_secret=_secret(llm.get("apiKeySecretRef"), "apiKey"),
        prometheus_address=consumers.get("prometheusAddress") or "",
        vector_retention_days=_optional_int(vectors.get("retentionDays")),
        max_points=_optional_int(vectors.get("maxPoints")),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def labels(pipeline: Pipeline, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "logpipe", "app.kubernetes.io/instance": pipeline.name,
            "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": "logpipe",
            "app.kubernetes.io/managed-by": MANAGED_BY, "logpipe.io/pipeline": pipeline.name}


def selector(pipeline: Pipeline, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": pipeline.name, "app.kubernetes.io/component": component}


def _secret_env(name: str, secret: tuple[str, str]) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret[0], "key": secret[1]}}}


def shared_env(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The addresses every child reads (logpipe.core.settings.CommonSettings)."""
    env = [_secret_env("KAFKA_BOOTSTRAP_SERVERS", pipeline.bootstrap_secret) if pipeline.bootstrap_secret
           else {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": pipeline.bootstrap_servers}]
    env += [
        {"name": "TOPIC_PREFIX", "value": pipeline.topic_prefix},
        {"name": "LOGPIPE_PIPELINE", "value": pipeline.id},
        _secret_env("CLICKHOUSE_URL", pipeline.dsn_secret),
        {"name": "CLICKHOUSE_DATABASE", "value": pipeline.database},
        {"name": "LOG_TTL_DAYS", "value": str(pipeline.ttl_days)},
        {"name": "QDRANT_URL", "value": pipeline.qdrant_url},
        {"name": "QDRANT_COLLECTION", "value": pipeline.collection},
        {"name": "LOGPIPE_DATA_DIR", "value": "/var/lib/logpipe"},
    ]
    if pipeline.qdrant_api_key_secret:
        env.append(_secret_env("QDRANT_API_KEY", pipeline.qdrant_api_key_secret))
    return env


def _component_env(pipeline: Pipeline, component: str) -> list[dict[str, Any]]:
    prefix = component.upper()
    env = shared_env(pipeline) + [
        {"name": "OTEL_SERVICE_NAME", "value": component},
        {"name": f"{prefix}_HOST", "value": "0.0.0.0"},
        {"name": f"{prefix}_PORT", "value": str(PORTS[component])},
        {"name": f"{prefix}_GROUP_ID", "value": pipeline.group_id(component)},
    ]
    if component == "ingest":
        env.append({"name": "INGEST_VECTORIZE_LEVELS", "value": ",".join(pipeline.levels)})
    if component == "vectorizer":
        env.append({"name": "EMBEDDER_DIMENSION", "value": str(pipeline.dimension)})
        if pipeline.vector_retention_days is not None:
            env.append({"name": "VECTORIZER_RETENTION_DAYS", "value": str(pipeline.vector_retention_days)})
        if pipeline.max_points is not None:
            env.append({"name": "VECTORIZER_MAX_POINTS", "value": str(pipeline.max_points)})
    return env


_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                 "seccompProfile": {"type": "RuntimeDefault"}}
_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]}}


def _container(pipeline: Pipeline, name: str, args: list[str], env: list[dict[str, Any]],
               resources: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "image": pipeline.image, "imagePullPolicy": pipeline.image_pull_policy,
            "command": ["logpipe"], "args": args, "env": env, "resources": resources,
            "securityContext": dict(_CONTAINER_SECURITY),
            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/logpipe"},
                             {"name": "tmp", "mountPath": "/tmp"}]}


_VOLUMES = [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]


def deployment(pipeline: Pipeline, component: str, replicas: int | None = None) -> dict[str, Any]:
    """The Deployment of one consumer. `replicas` None: the minimum (the scaler moves it later)."""
    spec = pipeline.consumers[component]
    container = _container(pipeline, component, ["run", component], _component_env(pipeline, component),
                           spec.resources)
    container["ports"] = [{"name": "http", "containerPort": PORTS[component], "protocol": "TCP"}]
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5}
    container["readinessProbe"] = dict(probe, failureThreshold=3)
    container["livenessProbe"] = dict(probe, initialDelaySeconds=30, failureThreshold=6)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": pipeline.child_name(component), "namespace": pipeline.namespace,
                     "labels": labels(pipeline, component)},
        "spec": {
            "replicas": spec.min_replicas if replicas is None else replicas,
            "selector": {"matchLabels": selector(pipeline, component)},
            "template": {
                "metadata": {"labels": labels(pipeline, component)},
                "spec": {"securityContext": dict(_POD_SECURITY), "containers": [container],
                         "volumes": [dict(volume) for volume in _VOLUMES]},
            },
        },
    }


def service(pipeline: Pipeline, component: str) -> dict[str, Any]:
    """A ClusterIP Service in front of a consumer's /health and /metrics."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": pipeline.child_name(component), "namespace": pipeline.namespace,
                     "labels": labels(pipeline, component)},
        "spec": {"type": "ClusterIP", "selector": selector(pipeline, component),
                 "ports": [{"name": "http", "port": PORTS[component], "targetPort": "http", "protocol": "TCP"}]},
    }


def cronjob(pipeline: Pipeline) -> dict[str, Any] | None:
    """The nightly analysis (`logpipe analyze`); None when analysis is off."""
    if not pipeline.analysis_enabled:
        return None
    env = shared_env(pipeline) + [
        {"name": "OTEL_SERVICE_NAME", "value": "analyzer"},
        # The CronJob schedules the run: the analyzer must not schedule one of its own.
        {"name": "ANALYSIS_SCHEDULE_CRON", "value": ""},
        {"name": "ANALYZER_LLM_BACKEND", "value": pipeline.llm_backend},
        {"name": "ANALYZER_LLM_MODEL", "value": pipeline.llm_model},
    ]
    if pipeline.llm_endpoint:
        name = "ANALYZER_OPENAI_BASE_URL" if pipeline.llm_backend == "openai" else "OLLAMA_HOST"
        env.append({"name": name, "value": pipeline.llm_endpoint})
    if pipeline.llm_api_key_secret:
        env.append(_secret_env("ANALYZER_OPENAI_API_KEY", pipeline.llm_api_key_secret))
    container = _container(pipeline, "analysis", ["analyze", "--window-hours", str(pipeline.window_hours),
                                                  "--format", "summary"], env, {})
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": pipeline.child_name("analysis"), "namespace": pipeline.namespace,
                     "labels": labels(pipeline, "analysis")},
        "spec": {
            "schedule": pipeline.schedule, "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 2, "template": {
                "metadata": {"labels": labels(pipeline, "analysis")},
                "spec": {"restartPolicy": "OnFailure", "securityContext": dict(_POD_SECURITY),
                         "containers": [container], "volumes": [dict(volume) for volume in _VOLUMES]},
            }}},
        },
    }


def scaled_object(pipeline: Pipeline, component: str) -> dict[str, Any]:
    """A KEDA ScaledObject (consumers.scaler: keda): a Kafka trigger on the group's lag and, with
    the sizing rule and a Prometheus address, a Prometheus trigger on the incoming rate the
    operator measures (`logpipe_operator_incoming_records_per_second`), so KEDA scales by lag and
    by rate as the operator's own scaler does: KEDA takes the larger of the two triggers."""
    spec = pipeline.consumers[component]
    metadata: dict[str, str] = {
        "consumerGroup": pipeline.group_id(component),
        "topic": getattr(pipeline.topics, TOPIC_OF[component]),
        "lagThreshold": str(spec.target_lag_per_replica),
        "offsetResetPolicy": "earliest",
    }
    if pipeline.bootstrap_secret:
        # KEDA reads the variable from the scaled container, which takes it from the Secret.
        metadata["bootstrapServersFromEnv"] = "KAFKA_BOOTSTRAP_SERVERS"
    else:
        metadata["bootstrapServers"] = pipeline.bootstrap_servers
    triggers: list[dict[str, Any]] = [{"type": "kafka", "metadata": metadata}]
    if spec.records_per_second_per_replica and pipeline.prometheus_address:
        # AverageValue: KEDA asks for ceil(rate / threshold) replicas. No sample yet (the
        # operator's first pass has no rate) reads as 0, which leaves the lag trigger in charge.
        query = (f'max(logpipe_operator_incoming_records_per_second{{pipeline="{pipeline.id}",'
                 f'component="{component}"}})')
        triggers.append({"type": "prometheus", "metadata": {
            "serverAddress": pipeline.prometheus_address, "query": query,
            "threshold": str(spec.records_per_second_per_replica), "ignoreNullValues": "true"}})
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": pipeline.child_name(component), "namespace": pipeline.namespace,
                     "labels": labels(pipeline, component)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": pipeline.child_name(component)},
            # A group gives each partition to one member: replicas beyond the partitions idle
            # (the Kafka trigger stops there by itself; the rate trigger would not).
            "minReplicaCount": spec.min_replicas,
            "maxReplicaCount": replica_ceiling(spec, pipeline.partitions),
            "cooldownPeriod": spec.cooldown_seconds, "pollingInterval": 30,
            "triggers": triggers,
        },
    }


@dataclass(frozen=True)
class NetworkRules:
    """Who may reach a consumer's port (the operator's settings, from the chart's `networkPolicy`
    values). Nothing calls a consumer's routes in a cluster; only Prometheus scrapes /metrics,
    which shares the port with /flush and /process (refused without a token anyway). Empty
    selectors: any namespace, any pod there."""
    metrics_namespace_selector: dict[str, Any] = field(default_factory=dict)
    metrics_pod_selector: dict[str, Any] = field(default_factory=dict)


def network_policy(pipeline: Pipeline, component: str, rules: NetworkRules) -> dict[str, Any]:
    """A NetworkPolicy in front of one consumer: only the metrics scraper reaches its port."""
    peer: dict[str, Any] = {"namespaceSelector": dict(rules.metrics_namespace_selector)}
    if rules.metrics_pod_selector:
        peer["podSelector"] = dict(rules.metrics_pod_selector)
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": pipeline.child_name(component), "namespace": pipeline.namespace,
                     "labels": labels(pipeline, component)},
        "spec": {"podSelector": {"matchLabels": selector(pipeline, component)},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [peer], "ports": [{"port": "http", "protocol": "TCP"}]}]},
    }


def desired_objects(pipeline: Pipeline, network: NetworkRules | None = None) -> list[dict[str, Any]]:
    """Every child object of the pipeline, in the order they are applied; `network` None: no
    NetworkPolicies (OPERATOR_NETWORK_POLICIES=false)."""
    objects: list[dict[str, Any]] = []
    for component in COMPONENTS:
        objects.append(deployment(pipeline, component))
        objects.append(service(pipeline, component))
        if network is not None:
            objects.append(network_policy(pipeline, component, network))
        if pipeline.scaler == "keda":
            objects.append(scaled_object(pipeline, component))
    job = cronjob(pipeline)
    if job is not None:
        objects.append(job)
    return objects


# Scaling by lag and incoming rate (pure): the operator's own scaler when consumers.scaler is `operator`.

@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    reason: str

    def changed(self, current: int) -> bool:
        return self.replicas != current


def replica_ceiling(consumer: Consumer, partitions: int | None) -> int:
    """maxReplicas, and no more replicas than partitions: a consumer group gives each partition
    to one member, so a replica beyond the partition count gets nothing to do."""
    ceiling = consumer.max_replicas if partitions is None else min(consumer.max_replicas, max(partitions, 1))
    return max(consumer.min_replicas, ceiling)


def replicas_by_input(lag: int, consumer: Consumer, rate: float | None = None) -> tuple[int, str]:
    """What each input asks for, and which asked for more: the lag, ceil(lag / targetLagPerReplica),
    to drain a backlog; the incoming rate, ceil(rate / recordsPerSecondPerReplica), to keep up
    with it before a backlog builds (only when the sizing rule is given and a rate was measured)."""
    by_lag = math.ceil(max(lag, 0) / consumer.target_lag_per_replica)
    by_rate = 0
    if consumer.records_per_second_per_replica and rate is not None:
        by_rate = math.ceil(max(rate, 0.0) / consumer.records_per_second_per_replica)
    return (by_rate, "Rate") if by_rate > by_lag else (by_lag, "Lag")


def wanted_replicas(lag: int, consumer: Consumer, rate: float | None = None, partitions: int | None = None) -> int:
    """The larger of what the lag and the incoming rate ask for, within [min, max] and at most
    one replica per partition."""
    wanted, _ = replicas_by_input(lag, consumer, rate)
    return max(consumer.min_replicas, min(replica_ceiling(consumer, partitions), wanted))


def decide_scale(current: int, lag: int, consumer: Consumer, seconds_since_last_change: float | None,
                 rate: float | None = None, partitions: int | None = None) -> ScaleDecision:
    """Up at once when lag or rate needs it; down only once `cooldown_seconds` passed since the
    last change, so a lag that dips between two polls does not flap the Deployment."""
    wanted = wanted_replicas(lag, consumer, rate, partitions)
    _, driver = replicas_by_input(lag, consumer, rate)
    if current < consumer.min_replicas or current > consumer.max_replicas:
        return ScaleDecision(max(consumer.min_replicas, min(consumer.max_replicas, current)), "OutOfBounds")
    if wanted > current:
        return ScaleDecision(wanted, "RateAboveCapacity" if driver == "Rate" else "LagAboveTarget")
    if wanted < current:
        if seconds_since_last_change is not None and seconds_since_last_change < consumer.cooldown_seconds:
            return ScaleDecision(current, "CoolingDown")
        if current > replica_ceiling(consumer, partitions) and wanted == replica_ceiling(consumer, partitions):
            return ScaleDecision(wanted, "AbovePartitions")
        return ScaleDecision(wanted, "LagBelowTarget")
    return ScaleDecision(current, "Steady")


def incoming_rate(end_offsets: int, observed_at: float, before_end_offsets: int | None,
                  before_observed_at: float | None) -> float | None:
    """Records per second arriving on the topic between two lag readings (the growth of the
    summed end offsets); None without an earlier reading, or when the offsets went back (a topic
    recreated)."""
    if before_end_offsets is None or before_observed_at is None or observed_at <= before_observed_at:
        return None
    grown = end_offsets - before_end_offsets
    if grown < 0:
        return None
    return grown / (observed_at - before_observed_at)
