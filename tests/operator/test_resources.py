"""Pure builders with plain values: every child object against a golden file, the scaling
decisions and the status conditions. `LOGPIPE_UPDATE_GOLDEN=1` rewrites the golden files."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from logpipe_operator import resources, status
from logpipe_operator.resources import Consumer, decide_scale, wanted_replicas

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def cases() -> dict[str, resources.Pipeline]:
    minimal, full = example("pipeline.yaml"), example("pipeline-full.yaml")
    keda = copy.deepcopy(full)
    keda["spec"]["consumers"]["scaler"] = "keda"
    no_analysis = copy.deepcopy(minimal)
    no_analysis["spec"]["analysis"] = {"enabled": False}
    return {name: resources.parse(obj["metadata"]["name"], obj["metadata"]["namespace"], obj["spec"])
            for name, obj in {"minimal": minimal, "full": full, "keda": keda, "no-analysis": no_analysis}.items()}


@pytest.mark.parametrize("case", ["minimal", "full", "keda", "no-analysis"])
def test_builders_match_golden_objects(case):
    built = resources.desired_objects(cases()[case], resources.NetworkRules())
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("LOGPIPE_UPDATE_GOLDEN"):
        path.write_text(yaml.safe_dump_all(built, sort_keys=False))
    assert built == list(yaml.safe_load_all(path.read_text()))


def test_minimal_pipeline_defaults_and_names():
    pipeline = cases()["minimal"]
    assert pipeline.topic_prefix == "shop.checkout."
    assert pipeline.topics.raw_logs == "shop.checkout.raw-logs"
    assert pipeline.collection == "shop_checkout"
    assert pipeline.id == "shop/checkout"
    assert pipeline.group_id("ingest") == "shop.checkout.ingest"
    assert pipeline.retention_seconds == 168 * 3600
    assert [obj["kind"] for obj in resources.desired_objects(pipeline)] == \
        ["Deployment", "Service", "Deployment", "Service", "CronJob"]
    assert [obj["kind"] for obj in resources.desired_objects(pipeline, resources.NetworkRules())] == \
        ["Deployment", "Service", "NetworkPolicy", "Deployment", "Service", "NetworkPolicy", "CronJob"]


def _env(obj: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in obj["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_vectors_retention_reaches_the_vectorizer_only_where_the_spec_sets_it(monkeypatch):
    minimal, full = cases()["minimal"], cases()["full"]
    vectorizer = {case: next(o for o in resources.desired_objects(p) if o["kind"] == "Deployment"
                             and o["metadata"]["name"].endswith("-vectorizer"))
                  for case, p in (("minimal", minimal), ("full", full))}
    # Unset: the vectorizer's defaults (storage.ttlDays through LOG_TTL_DAYS; 400,000 points
    # with the embedded engine, no cap with a Qdrant server).
    assert "VECTORIZER_MAX_POINTS" not in _env(vectorizer["minimal"])
    assert "VECTORIZER_RETENTION_DAYS" not in _env(vectorizer["minimal"])
    assert _env(vectorizer["full"])["VECTORIZER_RETENTION_DAYS"] == "14"
    assert _env(vectorizer["full"])["VECTORIZER_MAX_POINTS"] == "2000000"
    assert _env(vectorizer["full"])["LOG_TTL_DAYS"] == "30"
    # 0 means no cap, and is passed as such.
    spec = example("pipeline.yaml")["spec"]
    spec["vectors"] = {"maxPoints": 0}
    uncapped = resources.parse("checkout", "shop", spec)
    deployment = resources.deployment(uncapped, "vectorizer")
    assert _env(deployment)["VECTORIZER_MAX_POINTS"] == "0"
    # And the vectorizer reads them from its environment as the settings it documents.
    from logpipe.vectorizer.settings import Settings

    for name in ("VECTORIZER_MAX_POINTS", "VECTORIZER_RETENTION_DAYS", "LOG_TTL_DAYS", "QDRANT_URL"):
        monkeypatch.setenv(name, _env(vectorizer["full"])[name])
    read = Settings()
    assert read.points_cap() == 2_000_000 and read.retention() == 14 and read.log_ttl_days == 30


def test_network_policy_lets_only_the_metrics_scraper_reach_a_consumer():
    pipeline = cases()["minimal"]
    rules = resources.NetworkRules({"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                   {"matchLabels": {"app.kubernetes.io/name": "prometheus"}})
    policy = resources.network_policy(pipeline, "vectorizer", rules)
    pods = resources.deployment(pipeline, "vectorizer")["spec"]["template"]["metadata"]["labels"]
    # It selects exactly the consumer's pods (and not the other consumer's).
    chosen = policy["spec"]["podSelector"]["matchLabels"]
    assert chosen.items() <= pods.items()
    assert not chosen.items() <= resources.deployment(pipeline, "ingest")["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
        "ports": [{"port": "http", "protocol": "TCP"}]}]
    # The named port is the container's.
    container = resources.deployment(pipeline, "vectorizer")["spec"]["template"]["spec"]["containers"][0]
    assert [port["name"] for port in container["ports"]] == ["http"]


def test_keda_renders_a_scaled_object_with_a_kafka_trigger():
    pipeline = cases()["keda"]
    scaled = resources.scaled_object(pipeline, "ingest")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "shop.payments.ingest"
    assert trigger["metadata"]["topic"] == "shop.payments.raw-logs"
    assert trigger["metadata"]["lagThreshold"] == "50000"
    # The brokers come from a Secret: KEDA reads them from the scaled container's environment.
    assert trigger["metadata"]["bootstrapServersFromEnv"] == "KAFKA_BOOTSTRAP_SERVERS"
    # maxReplicas 8, but the topic has 6 partitions: a seventh member would get none.
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 6)


def test_keda_scales_by_rate_with_the_sizing_rule_and_a_prometheus_address():
    pipeline = cases()["keda"]
    rate = resources.scaled_object(pipeline, "ingest")["spec"]["triggers"][1]
    assert rate == {"type": "prometheus", "metadata": {
        "serverAddress": "http://prometheus-operated.monitoring:9090",
        "query": 'max(logpipe_operator_incoming_records_per_second{pipeline="shop/payments",component="ingest"})',
        "threshold": "20000", "ignoreNullValues": "true"}}
    # The vectorizer's own rule and its own series.
    vectorizer = resources.scaled_object(pipeline, "vectorizer")["spec"]["triggers"][1]["metadata"]
    assert vectorizer["threshold"] == "2400" and 'component="vectorizer"' in vectorizer["query"]
    # Without the rule, or without Prometheus, KEDA scales by lag alone.
    for change in ({"recordsPerSecondPerReplica": None}, {"prometheusAddress": None}):
        spec = copy.deepcopy(example("pipeline-full.yaml")["spec"])
        spec["consumers"]["scaler"] = "keda"
        if "prometheusAddress" in change:
            del spec["consumers"]["prometheusAddress"]
        else:
            del spec["consumers"]["ingest"]["recordsPerSecondPerReplica"]
        scaled = resources.scaled_object(resources.parse("payments", "shop", spec), "ingest")
        assert [trigger["type"] for trigger in scaled["spec"]["triggers"]] == ["kafka"]


def test_resources_are_written_as_the_api_server_reads_them_back():
    spec = {"kafka": {"bootstrapServers": "k:9092"}, "storage": {"dsnSecretRef": {"name": "c"}},
            "consumers": {"ingest": {"resources": {"requests": {"cpu": 1, "memory": "512Mi"}}}}}
    container = resources.deployment(resources.parse("a", "b", spec), "ingest")["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "512Mi"}}


def test_parse_refuses_what_the_crd_would_refuse():
    with pytest.raises(ValueError, match="minReplicas 3 > maxReplicas 1"):
        resources.parse("a", "b", {"kafka": {"bootstrapServers": "k:9092"}, "storage": {"dsnSecretRef": {"name": "c"}},
                                   "consumers": {"ingest": {"minReplicas": 3, "maxReplicas": 1}}})
    with pytest.raises(ValueError, match="invalid duration"):
        resources.duration_seconds("a week")
    assert resources.duration_seconds("1h30m") == 5400


CONSUMER = Consumer(min_replicas=1, max_replicas=4, target_lag_per_replica=100, cooldown_seconds=60)


@pytest.mark.parametrize("lag, wanted", [(0, 1), (50, 1), (100, 1), (101, 2), (350, 4), (10_000, 4)])
def test_wanted_replicas_is_ceil_of_lag_within_bounds(lag, wanted):
    assert wanted_replicas(lag, CONSUMER) == wanted


def test_scaling_goes_up_at_once_and_down_only_after_the_cooldown():
    assert decide_scale(1, 350, CONSUMER, seconds_since_last_change=1) == resources.ScaleDecision(4, "LagAboveTarget")
    assert decide_scale(4, 0, CONSUMER, seconds_since_last_change=10) == resources.ScaleDecision(4, "CoolingDown")
    assert decide_scale(4, 0, CONSUMER, seconds_since_last_change=61) == resources.ScaleDecision(1, "LagBelowTarget")
    assert decide_scale(4, 0, CONSUMER, seconds_since_last_change=None) == resources.ScaleDecision(1, "LagBelowTarget")
    assert decide_scale(2, 150, CONSUMER, seconds_since_last_change=0) == resources.ScaleDecision(2, "Steady")
    # Someone set replicas outside the bounds by hand: back inside at once.
    assert decide_scale(9, 0, CONSUMER, seconds_since_last_change=0) == resources.ScaleDecision(4, "OutOfBounds")


def test_no_flapping_when_lag_oscillates_around_the_target():
    replicas, last_change, changes = 1, None, 0
    for second, lag in enumerate([150, 90, 160, 80, 170, 60, 150, 95] * 3):
        decision = decide_scale(replicas, lag, CONSUMER,
                                None if last_change is None else second - last_change)
        if decision.changed(replicas):
            replicas, last_change, changes = decision.replicas, second, changes + 1
    assert changes == 1 and replicas == 2  # up once, never down within the 60 s cooldown


# The sizing rule: 1,000 records/s per replica (docs/operator.md, Sizing).
SIZED = Consumer(min_replicas=1, max_replicas=8, target_lag_per_replica=100_000, cooldown_seconds=60,
                 records_per_second_per_replica=1_000)


@pytest.mark.parametrize("rate, lag, partitions, wanted", [
    (0.0, 0, 8, 1),          # nothing arrives: the minimum
    (999.0, 0, 8, 1),        # one replica takes 1,000/s
    (3_500.0, 0, 8, 4),      # ceil(3,500 / 1,000)
    (3_500.0, 500_000, 8, 5),  # the lag asks for more (ceil(500,000 / 100,000)): the larger wins
    (20_000.0, 0, 8, 8),     # maxReplicas
    (20_000.0, 0, 3, 3),     # a replica beyond the partitions would get none
    (None, 0, 8, 1),         # no rate measured yet (the first pass): the lag alone
])
def test_wanted_replicas_follow_the_incoming_rate_at_the_sized_capacity(rate, lag, partitions, wanted):
    assert wanted_replicas(lag, SIZED, rate=rate, partitions=partitions) == wanted


def test_without_a_sizing_rule_the_rate_is_ignored_and_partitions_still_cap():
    assert wanted_replicas(0, CONSUMER, rate=1_000_000.0, partitions=4) == 1
    assert wanted_replicas(10_000, CONSUMER, rate=None, partitions=2) == 2
    assert decide_scale(1, 10_000, CONSUMER, None, partitions=2) == resources.ScaleDecision(2, "LagAboveTarget")


def test_scaling_by_rate_names_its_reason_and_keeps_the_cooldown():
    assert decide_scale(1, 0, SIZED, 0, rate=2_500.0, partitions=8) == resources.ScaleDecision(3, "RateAboveCapacity")
    assert decide_scale(3, 0, SIZED, 10, rate=800.0, partitions=8) == resources.ScaleDecision(3, "CoolingDown")
    assert decide_scale(3, 0, SIZED, 61, rate=800.0, partitions=8) == resources.ScaleDecision(1, "LagBelowTarget")
    # Partitions went down to 2 under 3 replicas: the idle one goes once the cooldown passed.
    assert decide_scale(3, 0, SIZED, 61, rate=5_000.0, partitions=2) == resources.ScaleDecision(2, "AbovePartitions")


def test_incoming_rate_from_two_end_offset_readings():
    assert resources.incoming_rate(13_000, 110.0, 3_000, 100.0) == 1_000.0
    assert resources.incoming_rate(3_000, 100.0, None, None) is None  # the first reading
    assert resources.incoming_rate(10, 110.0, 3_000, 100.0) is None   # the topic was recreated
    assert resources.incoming_rate(3_000, 100.0, 3_000, 100.0) is None


def test_the_sizing_rule_is_read_from_the_spec():
    spec = {"kafka": {"bootstrapServers": "kafka:9092"}, "storage": {"dsnSecretRef": {"name": "ch"}},
            "consumers": {"ingest": {"recordsPerSecondPerReplica": 40_000},
                          "vectorizer": {"recordsPerSecondPerReplica": 1_500}}}
    pipeline = resources.parse("p", "ns", spec)
    assert pipeline.consumers["ingest"].records_per_second_per_replica == 40_000
    assert pipeline.consumers["vectorizer"].records_per_second_per_replica == 1_500
    assert resources.parse("p", "ns", {**spec, "consumers": {}}).consumers["ingest"].records_per_second_per_replica is None


def test_conditions_ready_reason_and_transition_times():
    first = status.merge_conditions(None, [status.Condition("TopicsReady", True, "TopicsPresent", "5 topics"),
                                           status.Condition("StorageReady", False, "StorageUnavailable", "refused")],
                                    generation=1, now="2026-01-01T00:00:00Z")
    assert [(c["type"], c["status"], c["reason"]) for c in first] == [
        ("Ready", "False", "StorageUnavailable"), ("TopicsReady", "True", "TopicsPresent"),
        ("StorageReady", "False", "StorageUnavailable")]
    assert "StorageReady: refused" in first[0]["message"]
    assert status.phase(first) == "Degraded"
    second = status.merge_conditions(first, [status.Condition("TopicsReady", True, "TopicsPresent", "5 topics"),
                                             status.Condition("StorageReady", True, "SchemaApplied", "ok")],
                                     generation=2, now="2026-01-01T00:05:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in second}
    assert times == {"Ready": "2026-01-01T00:05:00Z", "TopicsReady": "2026-01-01T00:00:00Z",
                     "StorageReady": "2026-01-01T00:05:00Z"}
    assert status.phase(second) == "Running"
    assert [c["type"] for c in status.changed(first, second)] == ["Ready", "StorageReady"]
