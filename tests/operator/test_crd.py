"""The CRD as the API server would apply it: the OpenAPI schema (jsonschema) with its defaults,
the CEL rules (cel-python, with `oldSelf` on updates), and kubernetes-validate --strict."""

from __future__ import annotations

import copy
from pathlib import Path

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from logpipe_operator import resources

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "logpipelines.logpipe.io.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
EXAMPLES = {path.name: yaml.safe_load(path.read_text()) for path in sorted((ROOT / "examples").glob("pipeline*.yaml"))}
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")  # CronJob.spec.timeZone is GA from 1.27


def with_defaults(value, schema):
    """Fill `default`s the way the API server does before validation (absent keys only)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = with_defaults(value[key], sub)
    elif isinstance(value, list) and "items" in schema:
        value = [with_defaults(item, schema["items"]) for item in value]
    return value


def as_jsonschema(schema):
    """The structural schema without Kubernetes' extensions (nullable, int-or-string, ...)."""
    if isinstance(schema, dict):
        return {key: as_jsonschema(value) for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if isinstance(schema, list):
        return [as_jsonschema(item) for item in schema]
    return schema


def cel_errors(value, schema, old=None, path="") -> list[str]:
    """Evaluate every x-kubernetes-validations rule where its node is present, as the API server
    does: rules naming `oldSelf` (transition rules) only on updates where the old node exists."""
    errors: list[str] = []
    environment = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"] and old is None:
            continue
        program = environment.program(environment.compile(rule["rule"]))
        activation = {"self": celpy.json_to_cel(value)}
        if old is not None:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = program.evaluate(activation)
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += cel_errors(value[key], sub, (old or {}).get(key) if isinstance(old, dict) else None,
                                     f"{path}.{key}")
    return errors


def admit(obj, old=None) -> dict:
    """Default, validate and check CEL like `kubectl apply`; raises on a rejected object."""
    obj = with_defaults(copy.deepcopy(obj), SCHEMA)
    jsonschema.validate(obj, as_jsonschema(SCHEMA))
    errors = cel_errors(obj, SCHEMA, with_defaults(copy.deepcopy(old), SCHEMA) if old else None)
    if errors:
        raise ValueError("; ".join(errors))
    return obj


def test_crd_names_scope_status_and_printer_columns():
    spec = CRD["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"], spec["names"]["shortNames"]) == \
        ("logpipe.io", "Namespaced", "LogPipeline", ["lp"])
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [column["name"] for column in version["additionalPrinterColumns"]] == \
        ["Phase", "Ready", "Topics", "Ingest", "Vectorizer", "Last analysis", "Age"]


def test_every_spec_field_has_a_description():
    missing = []

    def walk(schema, path):
        if path and "description" not in schema:
            missing.append(path)
        for key, sub in (schema.get("properties") or {}).items():
            walk(sub, f"{path}.{key}")
        if "items" in schema:
            walk(schema["items"], f"{path}[]")

    walk(SCHEMA["properties"]["spec"], "spec")
    assert missing == []


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_are_admitted_with_defaults(name):
    admitted = admit(EXAMPLES[name])
    assert admitted["spec"]["deletionPolicy"] in ("Retain", "Delete")
    assert admitted["spec"]["consumers"]["ingest"]["minReplicas"] >= 0
    if name == "pipeline.yaml":
        assert admitted["spec"]["kafka"]["partitions"] == 4
        assert admitted["spec"]["vectors"]["levels"] == ["FATAL", "ERROR", "WARN"]
        assert admitted["spec"]["analysis"]["llm"]["backend"] == "none"


def minimal(**spec_changes) -> dict:
    obj = copy.deepcopy(EXAMPLES["pipeline.yaml"])
    for dotted, value in spec_changes.items():
        node = obj["spec"]
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return obj


@pytest.mark.parametrize("changes, message", [
    ({"deletionPolicy": "Destroy"}, "Destroy"),
    ({"kafka__partitions": 0}, "minimum"),
    ({"kafka__bootstrapServers": "no port"}, "does not match"),
    ({"storage": None}, "'storage' is a required property"),
    ({"storage__database": "drop table"}, "does not match"),
    ({"storage__ttlDays": 0}, "minimum"),
    ({"consumers__scaler": "hpa"}, "hpa"),
    ({"vectors__levels": ["ERROR", "LOUD"]}, "LOUD"),
    ({"vectors__maxPoints": -1}, "minimum"),
    ({"vectors__retentionDays": 0}, "minimum"),
    ({"analysis__schedule": "every night"}, "does not match"),
    ({"consumers__prometheusAddress": "prometheus:9090"}, "does not match"),
])
def test_schema_rejects_invalid_resources(changes, message):
    with pytest.raises(jsonschema.ValidationError, match=message):
        admit(minimal(**changes))


@pytest.mark.parametrize("changes, message", [
    ({"consumers__ingest": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must not exceed maxReplicas"),
    ({"consumers__vectorizer": {"minReplicas": 3, "maxReplicas": 1}}, "minReplicas must not exceed maxReplicas"),
    ({"kafka__retention": "30m"}, "retention must be at least 1h"),
    ({"kafka__bootstrapServersSecretRef": {"name": "kafka"}}, "exactly one of bootstrapServers"),
    ({"kafka__bootstrapServers": None}, "exactly one of bootstrapServers"),
    ({"analysis__llm": {"backend": "ollama"}}, "need an endpoint"),
    ({"consumers": {"scaler": "keda", "ingest": {"recordsPerSecondPerReplica": 1000}}}, "needs prometheusAddress"),
    ({"consumers": {"scaler": "keda", "vectorizer": {"recordsPerSecondPerReplica": 100}}}, "needs prometheusAddress"),
])
def test_cel_rules_reject_invalid_resources(changes, message):
    with pytest.raises(ValueError, match=message):
        admit(minimal(**changes))


def test_cel_admits_keda_rate_scaling_with_a_prometheus_address():
    admitted = admit(minimal(consumers={"scaler": "keda", "prometheusAddress": "http://prometheus:9090",
                                        "ingest": {"recordsPerSecondPerReplica": 1000}}))
    assert admitted["spec"]["consumers"]["ingest"]["recordsPerSecondPerReplica"] == 1000
    # The operator's own scaler reads the rate itself: no address needed.
    admit(minimal(consumers={"scaler": "operator", "ingest": {"recordsPerSecondPerReplica": 1000}}))


def test_cel_rejects_a_long_name():
    obj = minimal()
    obj["metadata"]["name"] = "n" * 41
    with pytest.raises(ValueError, match="at most 40 characters"):
        admit(obj)


def test_cel_transition_rules_on_update():
    old = minimal(kafka__topicPrefix="shop.checkout.", kafka__partitions=4)
    admit(minimal(kafka__topicPrefix="shop.checkout.", kafka__partitions=8), old)  # grow: fine
    with pytest.raises(ValueError, match="topicPrefix is immutable"):
        admit(minimal(kafka__topicPrefix="other.", kafka__partitions=4), old)
    with pytest.raises(ValueError, match="topicPrefix is immutable"):
        admit(minimal(kafka__partitions=4), old)  # removing it would change the derived prefix
    with pytest.raises(ValueError, match="partitions can only grow"):
        admit(minimal(kafka__topicPrefix="shop.checkout.", kafka__partitions=2), old)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_strict_accepts_the_crd_and_every_built_object(version):
    objects = [CRD]
    for example in EXAMPLES.values():
        admitted = admit(example)
        for scaler in ("operator", "keda"):
            spec = copy.deepcopy(admitted["spec"])
            spec["consumers"]["scaler"] = scaler
            pipeline = resources.parse(admitted["metadata"]["name"], admitted["metadata"]["namespace"], spec)
            rules = resources.NetworkRules({"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                           {"matchExpressions": [{"key": "app", "operator": "In",
                                                                  "values": ["prometheus"]}]})
            objects += resources.desired_objects(pipeline, rules)
    built_in = [obj for obj in objects if obj["kind"] != "ScaledObject"]
    assert {obj["kind"] for obj in built_in} == {"CustomResourceDefinition", "Deployment", "Service", "CronJob",
                                                 "NetworkPolicy"}
    for obj in built_in:
        assert kubernetes_validate.validate(obj, version, strict=True), obj["kind"]


def test_kubernetes_validate_strict_catches_a_wrong_field():
    pipeline = resources.parse("checkout", "shop", admit(EXAMPLES["pipeline.yaml"])["spec"])
    deployment = resources.deployment(pipeline, "ingest")
    deployment["spec"]["replica"] = 2  # a typo the strict schema must refuse
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
