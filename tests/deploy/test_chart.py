"""The Helm chart: linted (strict), rendered with default values and with every option on,
validated against two Kubernetes versions, hardened, and its values schema enforced.

Everything goes through helm-python-sdk (Helm's library, no helm binary) and
kubernetes-validate (the Kubernetes OpenAPI schemas, offline)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "logpipe"
SERVICES = ("gateway", "generator", "ingest", "embedder", "vectorizer", "analyzer")
COMPONENTS = (*SERVICES, "operator")
KUBERNETES_VERSIONS = ("1.29.0", "1.34.0")

EVERY_OPTION = {
    "generator": {"enabled": True, "replicas": 1},
    "ingress": {"enabled": True, "className": "nginx", "host": "logs.example.com",
                "tls": {"enabled": True, "secretName": "logs-example-com-tls"}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "additionalLabels": {"team": "platform"}},
    "tracing": {"enabled": True, "endpoint": "http://otel-collector:4318", "samplingRatio": 0.25},
    "devBroker": {"enabled": True},
    "kafka": {"enabled": True},
    "clickhouse": {"enabled": True},
    "qdrant": {"enabled": True},
    "redis": {"enabled": True},
    "postgresql": {"enabled": True},
    "ollama": {"enabled": True},
    "textEmbeddingsInference": {"enabled": True},
    "networkPolicy": {"enabled": True,
                      "ingressNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                      "metricsNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    "gateway": {"podAnnotations": {"example.com/team": "observability"},
                "env": [{"name": "GATEWAY_TOKEN_CACHE_S", "value": "2"}]},
}

# Kinds whose schema is not in Kubernetes' OpenAPI (CRDs of Strimzi and prometheus-operator).
CUSTOM_KINDS = {"Kafka", "KafkaNodePool", "ServiceMonitor", "PrometheusRule"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def render(values: dict | None = None, name: str = "logpipe") -> list[dict]:
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=name, namespace="logpipe", is_install=True)
    documents = []
    for path, text in rendered.items():
        if not path.endswith(".yaml") or not text.strip():
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


def by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def pod_spec(doc: dict) -> dict:
    template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    return template["spec"]


@pytest.mark.parametrize("values", [{}, EVERY_OPTION], ids=["defaults", "every-option"])
@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_chart_lints_clean_in_strict_mode(values, kube_version):
    result = helm_python.lint(CHART, values, strict=True, kube_version=kube_version)
    problems = [m for m in result["messages"] if m["severity"] >= 2]
    assert not problems and not result["errors"], problems or result["errors"]


@pytest.mark.parametrize("values", [{}, EVERY_OPTION], ids=["defaults", "every-option"])
@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_rendered_manifests_validate_strictly(values, kube_version):
    documents = render(values)
    assert documents
    for doc in documents:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_defaults_render_every_service_and_the_operator():
    documents = render()
    deployments = by_kind(documents, "Deployment")
    services = by_kind(documents, "Service")
    for name in ("gateway", "ingest", "embedder", "vectorizer", "analyzer", "operator"):
        assert f"logpipe-{name}" in deployments, sorted(deployments)
    assert "logpipe-generator" not in deployments  # demo traffic is opt-in
    ingest = deployments["logpipe-ingest"]["spec"]["template"]["spec"]["containers"][0]
    assert ingest["args"] == ["run", "ingest"]
    assert ingest["livenessProbe"]["httpGet"]["path"] == "/health"
    assert ingest["readinessProbe"]["httpGet"]["path"] == "/health"
    env = {item["name"]: item.get("value") for item in ingest["env"]}
    assert env["INGEST_HOST"] == "0.0.0.0" and env["OTEL_SERVICE_NAME"] == "ingest"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "logpipe-kafka-bootstrap:9092"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env  # tracing is off unless configured
    operator = deployments["logpipe-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert operator["args"] == ["operator"]
    assert services["logpipe-gateway"]["spec"]["ports"][0]["port"] == 80
    assert set(by_kind(documents, "PodDisruptionBudget")) >= {f"logpipe-{n}" for n in
                                                            ("gateway", "ingest", "embedder", "vectorizer", "analyzer")}


def test_every_service_has_one_values_block_with_the_same_keys():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = {name: set(values[name]) for name in COMPONENTS}
    assert all(k == {"enabled", "replicas", "image", "resources", "env", "podAnnotations"} for k in keys.values()), keys


def test_a_component_block_overrides_image_replicas_and_env():
    documents = render({"ingest": {"replicas": 5, "image": {"tag": "1.2.3"},
                                   "env": [{"name": "INGEST_BATCH_SIZE", "value": "2000"}],
                                   "podAnnotations": {"a": "b"}},
                        "embedder": {"enabled": False}})
    deployments = by_kind(documents, "Deployment")
    ingest = deployments["logpipe-ingest"]
    assert ingest["spec"]["replicas"] == 5
    container = ingest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/logpipe/logpipe:1.2.3"
    assert {"name": "INGEST_BATCH_SIZE", "value": "2000"} in container["env"]
    assert ingest["spec"]["template"]["metadata"]["annotations"]["a"] == "b"
    assert deployments["logpipe-gateway"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "ghcr.io/logpipe/logpipe:0.1.0"
    assert "logpipe-embedder" not in deployments


@pytest.mark.parametrize("values", [{}, EVERY_OPTION], ids=["defaults", "every-option"])
def test_every_pod_is_hardened_to_the_restricted_profile(values):
    workloads = [doc for doc in render(values) if doc["kind"] in WORKLOAD_KINDS]
    assert len(workloads) >= 6
    for doc in workloads:
        spec = pod_spec(doc)
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert not context.get("privileged"), where
            assert container.get("resources", {}).get("requests"), where
        assert all(not volume.get("hostPath") for volume in spec.get("volumes", [])), where


def test_no_secret_is_rendered_with_a_literal_value():
    first, second = render(EVERY_OPTION), render(EVERY_OPTION)
    secrets = by_kind(first, "Secret")
    assert list(secrets) == ["logpipe-credentials"]
    data = secrets["logpipe-credentials"]["data"]
    again = by_kind(second, "Secret")["logpipe-credentials"]["data"]
    assert set(data) == {"clickhouse-password", "qdrant-api-key", "postgres-password", "redis-password",
                         "service-token"}
    for key, value in data.items():
        # Generated at install (random each render: nothing fixed in values or templates).
        assert value != again[key], key
        assert len(base64.b64decode(value)) >= 32, key
    for doc in first:
        assert "stringData" not in doc or doc["kind"] != "Secret"
    # With an existing Secret the chart renders none and every reference points at it.
    documents = render({**EVERY_OPTION, "secrets": {"existingSecret": "my-credentials"}})
    assert not by_kind(documents, "Secret")
    refs = [item["valueFrom"]["secretKeyRef"]["name"]
            for doc in documents if doc["kind"] in WORKLOAD_KINDS
            for container in pod_spec(doc)["containers"] for item in container.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})]
    assert refs and set(refs) == {"my-credentials"}


def test_values_and_templates_hold_no_password_or_token():
    text = (CHART / "values.yaml").read_text().lower()
    for forbidden in ("password:", "token:", "apikey:", "api_key:", "changeme", "secret123"):
        assert forbidden not in text, forbidden


def test_backends_get_credentials_from_the_secret_not_the_url():
    documents = render(EVERY_OPTION)
    gateway = by_kind(documents, "Deployment")["logpipe-gateway"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in gateway["env"]}
    assert env["DATABASE_URL"]["value"].startswith("postgresql+psycopg://logpipe:$(DATABASE_PASSWORD)@")
    assert env["REDIS_URL"]["value"].startswith("redis://:$(REDIS_PASSWORD)@")
    assert env["CLICKHOUSE_URL"]["value"] == "http://logpipe:$(CLICKHOUSE_PASSWORD)@logpipe-clickhouse:8123"
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    names = [item["name"] for item in gateway["env"]]
    assert names.index("DATABASE_PASSWORD") < names.index("DATABASE_URL")
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")
    assert names.index("CLICKHOUSE_PASSWORD") < names.index("CLICKHOUSE_URL")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector:4318"
    assert env["KAFKA_BOOTSTRAP_SERVERS"]["value"] == "logpipe-broker:9092"


@pytest.mark.parametrize("values, message", [
    ({"ingest": {"replicas": -1}}, "replicas"),
    ({"ingest": {"replicas": "two"}}, "replicas"),
    ({"gateway": {"unknown": True}}, "unknown"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"config": {"logLevel": "LOUD"}}, "logLevel"),
    ({"config": {"database": {"url": "postgresql://logpipe:hunter2@db/logpipe"}}}, "url"),
    ({"service": {"port": 70000}}, "port"),
    ({"tracing": {"samplingRatio": 2}}, "samplingRatio"),
    ({"embedder": {"resources": {"limits": {"memory": "lots"}}}}, "memory"),
    ({"typo": 1}, "typo"),
])
def test_values_schema_rejects_wrong_values(values, message):
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmError) as raised:
            chart.validate_schema(values)
    assert message in str(raised.value)


def test_values_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value, node, path):
        assert node is not None, f"{path} has no schema"
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        if isinstance(value, dict) and node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False or path in ("",), path
            for key, child in value.items():
                walk(child, node["properties"].get(key), f"{path}.{key}")

    walk(values, schema, "")
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        chart.validate_schema(EVERY_OPTION)


def test_only_the_gateway_is_reachable_from_outside():
    policies = by_kind(render(EVERY_OPTION), "NetworkPolicy")
    assert set(policies) == {f"logpipe-{name}" for name in COMPONENTS}
    gateway = policies["logpipe-gateway"]["spec"]["ingress"]
    assert gateway[0]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    for name in ("ingest", "vectorizer", "analyzer", "generator"):
        rules = policies[f"logpipe-{name}"]["spec"]["ingress"]
        callers = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rules[0]["from"]}
        assert callers == {"gateway", "operator"}, name
        # The second rule is Prometheus' namespace only.
        assert rules[1]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    embedder = policies["logpipe-embedder"]["spec"]["ingress"][0]["from"]
    assert {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in embedder} == \
        {"gateway", "operator", "vectorizer", "analyzer"}


def test_ingress_serves_api_and_dashboard_with_tls():
    ingress = by_kind(render(EVERY_OPTION), "Ingress")["logpipe"]
    assert ingress["spec"]["tls"] == [{"hosts": ["logs.example.com"], "secretName": "logs-example-com-tls"}]
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/" and path["backend"]["service"]["name"] == "logpipe-gateway"
    assert not by_kind(render(), "Ingress")


def test_operator_rbac_covers_what_the_operator_touches():
    role = by_kind(render(), "ClusterRole")["logpipe-operator"]
    granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}
    for key in [("logpipe.io", "logpipelines"), ("logpipe.io", "logpipelines/status"),
                ("logpipe.io", "logpipelines/finalizers"), ("apps", "deployments"), ("", "services"),
                ("batch", "cronjobs"), ("keda.sh", "scaledobjects"), ("coordination.k8s.io", "leases"),
                ("networking.k8s.io", "networkpolicies")]:
        assert {"get", "list", "watch", "patch"} <= granted[key], key
    assert granted[("", "secrets")] == {"get", "list", "watch"}
    assert granted[("apiextensions.k8s.io", "customresourcedefinitions")] == {"get", "list", "watch"}
    assert {"list", "watch"} <= granted[("", "namespaces")]
    assert {"create"} <= granted[("", "events")]


def test_dashboards_ship_as_labelled_configmaps():
    maps = by_kind(render(), "ConfigMap")
    dashboards = {name: doc for name, doc in maps.items() if doc["metadata"]["labels"].get("grafana_dashboard") == "1"}
    expected = {"overview", "ingest", "vectors", "analysis", "api", "operator"}
    assert set(dashboards) == {f"logpipe-dashboard-{name}" for name in expected}
    for name, doc in dashboards.items():
        (filename, text), = doc["data"].items()
        dashboard = json.loads(text)
        assert dashboard["panels"] and all(panel["targets"] for panel in dashboard["panels"]), name
    assert not [n for n, d in by_kind(render({"grafana": {"dashboards": {"enabled": False}}}), "ConfigMap").items()
                if "dashboard" in n]


def _selects(monitor: dict, labels: dict[str, str]) -> bool:
    """A ServiceMonitor's selector (matchLabels, In/NotIn expressions) against a Service's labels."""
    selector = monitor["spec"]["selector"]
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"]) in expression["values"]
        if present != (expression["operator"] == "In"):
            return False
    return True


def test_service_monitors_scrape_the_release_and_every_pipelines_consumers_once():
    from logpipe_operator import resources

    monitors = by_kind(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert set(monitors) == {"logpipe", "logpipe-pipelines"}
    # The release's own services.
    own = by_kind(render(), "Service")
    assert own and all(_selects(monitors["logpipe"], doc["metadata"]["labels"]) for doc in own.values())
    assert not any(_selects(monitors["logpipe-pipelines"], doc["metadata"]["labels"]) for doc in own.values())
    # A LogPipeline's consumers, as the operator labels them, in any namespace, even one named
    # like the release: scraped by the second ServiceMonitor only, on their http port.
    spec = {"kafka": {"bootstrapServers": "kafka:9092"}, "storage": {"dsnSecretRef": {"name": "clickhouse"}}}
    pipeline = resources.parse("logpipe", "team-a", spec)
    for component in ("ingest", "vectorizer"):
        service = resources.service(pipeline, component)
        labels = service["metadata"]["labels"]
        assert _selects(monitors["logpipe-pipelines"], labels) and not _selects(monitors["logpipe"], labels)
        assert monitors["logpipe-pipelines"]["spec"]["namespaceSelector"] == {"any": True}
        assert [endpoint["port"] for endpoint in monitors["logpipe-pipelines"]["spec"]["endpoints"]] == \
            [port["name"] for port in service["spec"]["ports"]]
    assert set(by_kind(render({"serviceMonitor": {"enabled": True, "pipelines": False}}), "ServiceMonitor")) == \
        {"logpipe"}


def test_chart_crds_are_the_top_level_crds():
    source = ROOT / "crds"
    assert source.is_dir(), "crds/ is missing: the operator's CRDs are the chart's source (scripts/sync-crds.sh)"
    top = {path.name: path.read_bytes() for path in sorted(source.glob("*.yaml"))}
    chart = {path.name: path.read_bytes() for path in sorted((CHART / "crds").glob("*.yaml"))}
    assert top, "crds/ holds no CRD"
    assert chart == top, "charts/logpipe/crds differs from crds/: run scripts/sync-crds.sh"
    with helm_python.Chart.load(CHART) as loaded:
        assert loaded.crds  # Helm installs them before the templates


# Who may call each service's port (besides Prometheus' scrape): the chart's intent, one place.
CALLERS = {"generator": {"gateway", "operator"}, "ingest": {"gateway", "operator"},
           "vectorizer": {"gateway", "operator"}, "analyzer": {"gateway", "operator"},
           "embedder": {"gateway", "operator", "vectorizer", "analyzer"}}


@pytest.mark.parametrize("values", [{}, EVERY_OPTION], ids=["defaults", "every-option"])
def test_service_ports_ask_for_the_generated_service_token(values):
    """Services listen on every interface in their pods, so their own state-changing routes ask
    for a token (LOGPIPE_SERVICE_AUTH auto): every pod gets the generated service token."""
    documents = render({**values, "generator": {"enabled": True}})
    data = by_kind(documents, "Secret")["logpipe-credentials"]["data"]
    assert len(base64.b64decode(data["service-token"])) >= 32
    deployments = by_kind(documents, "Deployment")
    for name in SERVICES:
        container = deployments[f"logpipe-{name}"]["spec"]["template"]["spec"]["containers"][0]
        env = {item["name"]: item for item in container["env"]}
        assert env[f"{name.upper()}_HOST"]["value"] == "0.0.0.0", name
        assert env["LOGPIPE_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"] == \
            {"name": "logpipe-credentials", "key": "service-token"}, name
        assert env.get("LOGPIPE_SERVICE_AUTH", {}).get("value", "auto") == "auto", name


def test_network_policies_let_only_the_gateway_the_operator_and_prometheus_reach_services():
    prometheus = {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    values = {**EVERY_OPTION, "networkPolicy": {**EVERY_OPTION["networkPolicy"], "metricsPodSelector": prometheus}}
    for rendered, scrape_peer in ((render(values), {"namespaceSelector": monitoring, "podSelector": prometheus}),
                                  (render(), {"namespaceSelector": {}})):
        policies = by_kind(rendered, "NetworkPolicy")
        for name, callers in CALLERS.items():
            if f"logpipe-{name}" not in by_kind(rendered, "Deployment"):
                continue
            spec = policies[f"logpipe-{name}"]["spec"]
            assert spec["policyTypes"] == ["Ingress"]
            assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == name
            reached_by, scrapers = set(), []
            for rule in spec["ingress"]:
                assert rule["ports"] == [{"port": "http", "protocol": "TCP"}], name
                for peer in rule["from"]:
                    if "namespaceSelector" in peer:
                        scrapers.append(peer)
                    else:
                        # A bare podSelector: pods of this release in this namespace only.
                        assert set(peer) == {"podSelector"}, (name, peer)
                        labels = peer["podSelector"]["matchLabels"]
                        assert labels["app.kubernetes.io/instance"] == "logpipe", (name, peer)
                        reached_by.add(labels["app.kubernetes.io/component"])
            assert reached_by == callers, name
            assert scrapers == [scrape_peer], name
        operator = policies["logpipe-operator"]["spec"]["ingress"]
        assert [rule["ports"] for rule in operator] == [[{"port": "metrics", "protocol": "TCP"}]]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_operator_gives_pipelines_consumers_the_same_network_policy(enabled, monkeypatch):
    """The operator reads the chart's networkPolicy values (its env) and puts the same scrape
    rule in front of every pipeline's ingest and vectorizer."""
    from logpipe_operator import resources
    from logpipe_operator.settings import Settings

    prometheus = {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    rendered = render({"networkPolicy": {"enabled": enabled, "metricsNamespaceSelector": monitoring,
                                         "metricsPodSelector": prometheus}})
    container = by_kind(rendered, "Deployment")["logpipe-operator"]["spec"]["template"]["spec"]["containers"][0]
    for item in container["env"]:
        if item["name"].startswith("OPERATOR_") and "value" in item:
            monkeypatch.setenv(item["name"], item["value"])
    settings = Settings()
    assert settings.network_policies is enabled
    rules = resources.NetworkRules(settings.metrics_namespace_selector, settings.metrics_pod_selector)
    pipeline = resources.parse("checkout", "shop", {"kafka": {"bootstrapServers": "k:9092"},
                                                    "storage": {"dsnSecretRef": {"name": "c"}}})
    peer = resources.network_policy(pipeline, "ingest", rules)["spec"]["ingress"][0]["from"]
    # The release's own services admit Prometheus the same way.
    if enabled:
        chart_ingest = by_kind(rendered, "NetworkPolicy")["logpipe-ingest"]["spec"]["ingress"]
        assert peer[0] in [p for rule in chart_ingest for p in rule["from"]]
    assert peer == [{"namespaceSelector": monitoring, "podSelector": prometheus}]
