"""The Helm chart and the kustomize base install on a real API server, with least privilege.

- ``helm lint``; ``helm template`` output accepted by the server (``--dry-run=server``);
- the operator pod and the ``helm test`` pod pass Pod Security ``restricted``;
- ``values.schema.json`` refusals name the offending value;
- ``helm install`` creates the objects; ``kubectl auth can-i`` as the operator's
  ServiceAccount shows exactly the access the chart promises (watched vs. unwatched
  namespaces, no escalate/bind, no wildcards); the CRDs survive ``helm uninstall``;
- ``ingest.mode=standalone``: the ingest Deployment, its PodDisruptionBudget and its own
  ServiceAccount are accepted by the server, its pod passes ``restricted``, the Service
  selects the ingest pods, the operator runs with ``--no-ingest``, and the ingest
  ServiceAccount can do what ``promethios ingest`` needs and nothing more (what it needs
  is exercised for real in ``test_ingest_rbac.py``);
- the admission policy (no confused deputy; its behaviour is ``test_admission.py``'s):
  rendered for the main resource only, scoped, exempting and switched off as the values
  say; the chart binds nobody to its sidecar-image ClusterRole;
- the kustomize base's RBAC and admission policy equal the chart's; ``kubectl apply -k
  manifests/`` installs; the samples are accepted by the server's schema.

Pods land on kwok nodes, which never pull images: the operator is not running here, so
these tests check what the API server accepts and grants, not the operator's behaviour.
"""

from __future__ import annotations

import copy
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from promethios_local.localcluster import BinariesNotFoundError, find_binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "promethios-operator"
MANIFESTS = ROOT / "manifests"
CRD_NAMES = [
    "alertsinks.governance.promethios.ai",
    "governancepolicies.governance.promethios.ai",
    "governedagents.governance.promethios.ai",
]
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def helm_path() -> Path:
    """The helm that ``make testenv`` builds (beside kubectl), or helm on PATH."""
    try:
        helm = find_binaries().helm
    except BinariesNotFoundError:
        helm = None
    if helm is None or not helm.is_file():
        cached = Path("~/.cache/promethios/testenv/v1.37.2/bin/helm").expanduser()
        helm = cached if cached.is_file() else None
    if helm is None:
        pytest.fail("helm not found: run `make testenv`", pytrace=False)
    return helm


@dataclass
class Helm:
    """helm bound to the session's kubeconfig, with its state in a temporary directory."""

    path: Path
    kubeconfig: Path
    home: Path

    def __call__(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        argv = [str(self.path), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=env, timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def template(self, *args: str, namespace: str = "promethios-system") -> list[dict[str, Any]]:
        """Rendered objects. --kube-version: a helm built from source defaults to v1.20."""
        out = self("template", "promethios-operator", str(CHART), "-n", namespace,
                   "--kube-version", "1.37.2", *args).stdout  # fmt: skip
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def helm(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_path(), Path(cluster.kubeconfig), tmp_path_factory.mktemp("helm"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespaces(cluster: Any) -> Iterator[Any]:
    """A factory of fresh namespaces (optionally labelled), all deleted afterwards."""
    created: list[str] = []

    def make(prefix: str = "t-install", labels: dict[str, str] | None = None) -> str:
        name = unique(prefix)
        cluster.kubectl("create", "namespace", name)
        created.append(name)
        if labels:
            cluster.kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
        return name

    yield make
    if created:
        cluster.kubectl("delete", "namespace", "--wait=false", "--ignore-not-found", *created)


def can_i(cluster: Any, sa: str, *args: str) -> bool:
    """``kubectl auth can-i`` as a ServiceAccount (``system:serviceaccount:<ns>:<name>``)."""
    result = cluster.kubectl("auth", "can-i", f"--as={sa}", *args, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, (args, result.stdout, result.stderr)
    return answer == "yes"


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def rules_of(objects: list[dict[str, Any]], kind: str) -> list[list[dict[str, Any]]]:
    return [obj["rules"] for obj in by_kind(objects, kind)]


# ---- lint, render, server dry run ---------------------------------------------------------


STANDALONE = "ingest.mode=standalone"


def test_helm_lint_is_clean(helm: Helm) -> None:
    for extra in ([], ["--set", "watchNamespaces={a,b}"], ["--set", STANDALONE],
                  ["--set", f"{STANDALONE},watchNamespaces={{a,b}},ingest.replicas=1,"
                   "ingest.readTokenSecret.name=summary-token"]):  # fmt: skip
        result = helm("lint", "--strict", str(CHART), *extra)
        assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "metrics.grafanaDashboard.enabled=true,image.digest=sha256:" + "a" * 64],
        ["--set", f"{STANDALONE},ingest.readTokenSecret.name=summary-token"],
    ],
    ids=["defaults", "dashboard-and-digest", "standalone-ingest"],
)
def test_rendered_chart_is_accepted_by_the_server(
    helm: Helm, cluster: Any, namespaces: Any, values: list[str]
) -> None:
    release_ns, watched = namespaces(), namespaces()
    objects = helm.template("--set", f"watchNamespaces={{{watched}}}", *values,
                            namespace=release_ns)  # fmt: skip
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds.count("CustomResourceDefinition") == 3
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "Pod"} <= set(kinds)
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-",
                             input=yaml.safe_dump_all(objects))  # fmt: skip
    assert result.stdout.count("(server dry run)") == len(objects), result.stdout
    if "image.digest" in " ".join(values):
        pod = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"].endswith("@sha256:" + "a" * 64)
        assert len(by_kind(objects, "ConfigMap")) == 1
    if STANDALONE in " ".join(values):
        check_standalone_objects(objects, watched)
    else:
        assert len(by_kind(objects, "Deployment")) == 1
        check_leader_election_objects(objects, release_ns)


def check_leader_election_objects(objects: list[dict[str, Any]], release_ns: str) -> None:
    """The defaults: two operator pods, one Lease, a budget, standbys on other nodes, and a
    Service selecting every pod (each serves the ingest API)."""
    operator = deployment(objects, "operator")
    spec = operator["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--leader-elect" in args
    assert f"--leader-election-namespace={release_ns}" in args
    assert "--leader-election-lease-name=promethios-operator-leader" in args
    env = {e["name"]: e.get("valueFrom") for e in pod["containers"][0]["env"]}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    labels = spec["template"]["metadata"]["labels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    (budget,) = by_kind(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = next(s for s in by_kind(objects, "Service")
                   if s["metadata"]["name"] == "promethios-operator")  # fmt: skip
    assert service["spec"]["selector"].items() <= labels.items()
    dashboard = next(s for s in by_kind(objects, "Service")
                     if s["metadata"]["name"] == "promethios-operator-dashboard")  # fmt: skip
    assert dashboard["spec"]["sessionAffinity"] == "ClientIP"  # sessions are per pod
    (role,) = [r for r in by_kind(objects, "Role")
               if r["metadata"]["name"] == "promethios-operator-leader-election"]  # fmt: skip
    assert role["metadata"]["namespace"] == release_ns
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["promethios-operator-leader"], "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]  # fmt: skip


def deployment(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The operator's or the ingest's Deployment."""
    found = [obj for obj in by_kind(objects, "Deployment")
             if obj["metadata"]["labels"]["app.kubernetes.io/component"] == component]  # fmt: skip
    assert len(found) == 1, [obj["metadata"]["name"] for obj in by_kind(objects, "Deployment")]
    return found[0]


def check_standalone_objects(objects: list[dict[str, Any]], watched: str) -> None:
    """What ingest.mode=standalone renders: the wiring between the objects."""
    operator, ingest = deployment(objects, "operator"), deployment(objects, "ingest")
    assert ingest["metadata"]["name"] == "promethios-operator-ingest"
    operator_args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--no-ingest" in operator_args
    assert not any(arg.startswith("--ingest-port") for arg in operator_args)
    url = "--ingest-url=https://promethios-operator.{}.svc:8443"
    assert url.format(ingest["metadata"]["namespace"]) in operator_args
    # The operator keeps the certificate (auto) even though it serves no ingest itself.
    assert "--tls-mode=auto" in operator_args
    assert "--tls-secret=promethios-operator-ingest-tls" in operator_args
    spec = ingest["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:3] == ["ingest", "--port=8443", "--metrics-port=9090"]
    assert "--tls-cert-file=/etc/promethios/tls/tls.crt" in container["args"]
    assert "--tls-key-file=/etc/promethios/tls/tls.key" in container["args"]
    assert f"--namespace={watched}" in container["args"]
    assert "--read-token-file=/etc/promethios/read-token/token" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("ingest", 8443), ("metrics", 9090)]  # fmt: skip
    token = next(v for v in pod["volumes"] if v["name"] == "read-token")
    assert token["secret"]["secretName"] == "summary-token"
    # The certificate and key only, never the CA key the Secret also holds.
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]
    assert tls["secretName"] == "promethios-operator-ingest-tls"
    assert [item["key"] for item in tls["items"]] == ["tls.crt", "tls.key"]
    spread = pod["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert pod["serviceAccountName"] == "promethios-operator-ingest"
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == "promethios-operator"
    assert {sa["metadata"]["name"] for sa in by_kind(objects, "ServiceAccount")} == {
        "promethios-operator", "promethios-operator-ingest"}  # fmt: skip
    # The Service reaches the ingest pods only; the Deployments' selectors do not overlap.
    ingest_labels = spec["template"]["metadata"]["labels"]
    operator_labels = operator["spec"]["template"]["metadata"]["labels"]
    services = by_kind(objects, "Service")
    service = next(s for s in services if s["metadata"]["name"] == "promethios-operator")
    selector = service["spec"]["selector"]
    assert selector.items() <= ingest_labels.items()
    assert not selector.items() <= operator_labels.items()
    assert not operator["spec"]["selector"]["matchLabels"].items() <= ingest_labels.items()
    assert not spec["selector"]["matchLabels"].items() <= operator_labels.items()
    ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert ports == {"ingest": "ingest", "metrics": "metrics"}
    budgets = {b["metadata"]["name"]: b for b in by_kind(objects, "PodDisruptionBudget")}
    assert set(budgets) == {"promethios-operator", "promethios-operator-ingest"}
    budget = budgets["promethios-operator-ingest"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_optional_monitoring_objects_render_with_real_metric_names(helm: Helm) -> None:
    objects = helm.template(
        "--set", "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true",
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
    )  # fmt: skip
    monitor = by_kind(objects, "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # ... which is the plain metrics listener, not the agents' TLS port.
    service = next(
        s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "promethios-operator"
    )
    metrics = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
    assert metrics["targetPort"] == "metrics"
    container = deployment(objects, "operator")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert "--ingest-metrics-port=9090" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    rules = [r for g in by_kind(objects, "PrometheusRule")[0]["spec"]["groups"] for r in g["rules"]]
    expressions = {rule["alert"]: rule["expr"] for rule in rules}
    # Aggregated by agent: standalone ingest replicas each export their own series.
    by_agent = "min by (namespace, name) "
    assert f"{by_agent}(promethios_agent_heartbeat_age_seconds) > 300" in expressions.values()
    assert f"{by_agent}(promethios_agent_trust_score) < 0.7" in expressions.values()
    assert any(
        e.startswith("sum by (namespace, name, type) (")
        and 'promethios_violations_total{severity="critical"}' in e
        for e in expressions.values()
    )
    assert any(
        'alert_deliveries_total{result=~"failed|refused"}' in e for e in expressions.values()
    )
    summaries = " ".join(rule["annotations"]["summary"] for rule in rules)
    assert "{{ $labels.namespace }}" in summaries  # Prometheus templates survive Helm's
    refused = helm("template", "x", str(CHART), "--kube-version", "1.37.2",
                   "--set", "metrics.serviceMonitor.enabled=true", check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "needs the Prometheus Operator CRDs" in refused.stderr


def test_operator_and_test_pods_pass_pod_security_restricted(
    helm: Helm, cluster: Any, namespaces: Any
) -> None:
    restricted = namespaces("t-restricted", RESTRICTED)
    # The namespace really enforces "restricted": a pod without a security context is refused.
    container = {"name": "c", "image": "registry.k8s.io/pause:3.10"}
    naked = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "naked"},
             "spec": {"containers": [container]}}  # fmt: skip
    refused = cluster.kubectl("apply", "--dry-run=server", "-n", restricted, "-f", "-",
                              input=yaml.safe_dump(naked), check=False)  # fmt: skip
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr
    objects = helm.template(namespace=restricted)
    template = by_kind(objects, "Deployment")[0]["spec"]["template"]
    operator_pod = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "operator-pod", "namespace": restricted},
                    "spec": copy.deepcopy(template["spec"])}  # fmt: skip
    # Pod Security is what is checked here; the ServiceAccount belongs to an install.
    del operator_pod["spec"]["serviceAccountName"]
    test_pod = by_kind(objects, "Pod")[0]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    for pod in (operator_pod, test_pod):
        result = cluster.kubectl("apply", "--dry-run=server", "-n", restricted, "-f", "-",
                                 input=yaml.safe_dump(pod), check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr, result.stderr
    standalone = helm.template("--set", STANDALONE, namespace=restricted)
    ingest_spec = copy.deepcopy(deployment(standalone, "ingest")["spec"]["template"]["spec"])
    ingest_pod = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "ingest-pod", "namespace": restricted},
                  "spec": ingest_spec}  # fmt: skip
    del ingest_pod["spec"]["serviceAccountName"]
    result = cluster.kubectl("apply", "--dry-run=server", "-n", restricted, "-f", "-",
                             input=yaml.safe_dump(ingest_pod), check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    manifest = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    manifest_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "manifest-pod"},
                    "spec": manifest["spec"]["template"]["spec"]}  # fmt: skip
    del manifest_pod["spec"]["serviceAccountName"]
    result = cluster.kubectl("apply", "--dry-run=server", "-n", restricted, "-f", "-",
                             input=yaml.safe_dump(manifest_pod), check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


# ---- values.schema.json -------------------------------------------------------------------

REFUSALS = [
    ("replicaCount=abc", "/replicaCount", "got string, want integer"),
    ("replicaCount=2,leaderElection.enabled=false", "2 replicas need leaderElection.enabled", ""),
    ("leaderElection.renewDeadline=15", "renewDeadline (15) must be less than", "leaseDuration"),
    ("leaderElection.retryPeriod=9", "must exceed 1.2 x leaderElection.retryPeriod (9)", ""),
    ("leaderElection.leaseDuration=0", "/leaderElection/leaseDuration", "minimum"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy", "'Always', 'IfNotPresent', 'Never'"),
    ("bogus=1", "additional properties 'bogus' not allowed", ""),
    ("image.bogus=1", "additional properties 'bogus' not allowed", "/image"),
    ("crds.install=maybe", "/crds/install", "want boolean"),
    ("watchNamespaces={Bad_NS}", "'Bad_NS' does not match pattern", "/watchNamespaces/0"),
    ("service.type=Foo", "/service/type", "value must be one of"),
    ("metrics.prometheusRule.trustScoreThreshold=2", "/trustScoreThreshold", "maximum"),
    ("ingest.port=8080", "ingest.port and livenessPort must differ", "8080"),
    ("ingest.mode=sidecar", "/ingest/mode", "'inProcess', 'standalone'"),
    ("ingest.replicas=0", "/ingest/replicas", "minimum"),
    (
        "ingest.readTokenSecret.bogus=1",
        "additional properties 'bogus' not allowed",
        "/ingest/readTokenSecret",
    ),
    ("ingest.readTokenSecret.name=t", "ingest.readTokenSecret needs ingest.mode=standalone", ""),
    ("sidecar.allowedImages={ghcr.io/prom*}", "/sidecar/allowedImages/0", "does not match pattern"),
    (
        "admissionPolicy.validationActions={Block}",
        "/admissionPolicy/validationActions/0",
        "value must be one of",
    ),
    ("admissionPolicy.validationActions={Deny,Warn}", "Deny and Warn are mutually exclusive", ""),
    ("tls.mode=plain", "/tls/mode", "'auto', 'cert-manager', 'off'"),
    ("ingest.metricsPort=8443", "ingest.port and ingest.metricsPort must differ", "8443"),
    ("ingest.metricsPort=8080", "ingest.metricsPort and livenessPort must differ", "8080"),
    ("ingest.url=http://ingest.example:8443", "ingest.url must be https://", "auto"),
    ("tls.mode=off,ingest.url=https://x:1", "ingest.url is https:// but tls.mode is off", ""),
    ("tls.mode=cert-manager", "tls.mode=cert-manager needs cert-manager", "--api-versions"),
]


@pytest.mark.parametrize(("setting", "names", "says"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_values_are_refused_naming_the_value(
    helm: Helm, setting: str, names: str, says: str
) -> None:
    result = helm("template", "x", str(CHART), "--kube-version", "1.37.2", "--set", setting,
                  check=False)  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert names in result.stderr and says in result.stderr, result.stderr


def test_helm_install_refuses_bad_values_before_touching_the_cluster(
    helm: Helm, cluster: Any, namespaces: Any
) -> None:
    namespace = namespaces()
    release = unique("bad")
    result = helm("install", release, str(CHART), "-n", namespace,
                  "--set", "image.pullPolicy=Sometimes", check=False)  # fmt: skip
    assert result.returncode != 0
    assert "/image/pullPolicy" in result.stderr and "Sometimes" not in result.stdout
    assert helm("list", "-n", namespace, "-q").stdout.strip() == ""
    deployments = cluster.kubectl("get", "deployments", "-n", namespace, "-o", "name")
    assert deployments.stdout.strip() == ""


# ---- install and RBAC ---------------------------------------------------------------------


def test_rbac_has_no_wildcards_or_escalation_verbs(helm: Helm) -> None:
    for extra in ([], ["--set", "watchNamespaces={a,b}"], ["--set", STANDALONE],
                  ["--set", f"{STANDALONE},watchNamespaces={{a,b}}"]):  # fmt: skip
        objects = helm.template(*extra)
        rules = [
            r for kind in ("ClusterRole", "Role") for rs in rules_of(objects, kind) for r in rs
        ]
        assert rules
        for rule in rules:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def manifest_objects(*files: str) -> list[dict[str, Any]]:
    """The objects of some files of the kustomize base."""
    return [obj for name in files
            for obj in yaml.safe_load_all((MANIFESTS / name).read_text()) if obj]  # fmt: skip


def test_kustomize_rbac_equals_the_charts_clusterwide_rbac(helm: Helm) -> None:
    def roles(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        return {(obj["kind"], obj["metadata"]["name"]): obj["rules"] for obj in objects
                if obj and obj["kind"] in ("ClusterRole", "Role")}  # fmt: skip

    chart = roles(helm.template())
    manifests = roles(manifest_objects("rbac.yaml", "admissionpolicy.yaml"))
    assert set(chart) == {("ClusterRole", "promethios-operator"),
                          ("ClusterRole", "promethios-operator-cluster"),
                          ("ClusterRole", "promethios-operator-sidecar-image"),
                          ("Role", "promethios-operator-leader-election"),
                          ("Role", "promethios-operator-tls")}  # fmt: skip
    assert manifests == chart
    # The TLS Role names one Secret, and only it.
    (rule,) = chart[("Role", "promethios-operator-tls")]
    assert rule["resourceNames"] == ["promethios-operator-ingest-tls"]
    assert rule["verbs"] == ["get", "create", "patch"]


def test_cert_manager_mode_renders_certificates_the_operator_only_reads(helm: Helm) -> None:
    objects = helm.template("--set", "tls.mode=cert-manager,tls.extraNames={ingest.example.com}",
                            "--api-versions", "cert-manager.io/v1/Certificate")  # fmt: skip
    certificates = {c["metadata"]["name"]: c["spec"] for c in by_kind(objects, "Certificate")}
    serving = certificates["promethios-operator-ingest"]
    assert serving["secretName"] == "promethios-operator-ingest-tls"
    assert serving["dnsNames"] == ["promethios-operator.promethios-system.svc",
                                   "promethios-operator.promethios-system.svc.cluster.local",
                                   "ingest.example.com"]  # fmt: skip
    # The chart's own CA chain: a self-signed root, a CA certificate, an Issuer signing with it.
    assert certificates["promethios-operator-ca"]["isCA"] is True
    assert serving["issuerRef"] == {"name": "promethios-operator-ca", "kind": "Issuer",
                                    "group": "cert-manager.io"}  # fmt: skip
    issuers = {i["metadata"]["name"]: i["spec"] for i in by_kind(objects, "Issuer")}
    assert issuers["promethios-operator-ca"] == {"ca": {"secretName": "promethios-operator-ca"}}
    args = deployment(objects, "operator")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--tls-mode=cert-manager" in args and "--tls-extra-san=ingest.example.com" in args
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-tls")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                              "resourceNames": ["promethios-operator-ingest-tls"],
                              "verbs": ["get"]}]  # fmt: skip
    # An issuer of one's own replaces the chart's CA chain.
    own = helm.template("--set", "tls.mode=cert-manager,tls.certManager.issuerRef.name=corp,"
                        "tls.certManager.issuerRef.kind=ClusterIssuer",
                        "--api-versions", "cert-manager.io/v1/Certificate")  # fmt: skip
    (only,) = by_kind(own, "Certificate")
    assert only["spec"]["issuerRef"] == {"name": "corp", "kind": "ClusterIssuer",
                                         "group": "cert-manager.io"}  # fmt: skip
    assert by_kind(own, "Issuer") == []


def test_tls_off_renders_plain_http_and_no_tls_rbac(helm: Helm) -> None:
    objects = helm.template("--set", f"tls.mode=off,{STANDALONE}")
    operator = deployment(objects, "operator")["spec"]["template"]["spec"]["containers"][0]
    assert "--ingest-url=http://promethios-operator.promethios-system.svc:8443" in operator["args"]
    assert "--tls-mode=off" in operator["args"]
    ingest = deployment(objects, "ingest")["spec"]["template"]["spec"]
    assert "--plain-http" in ingest["containers"][0]["args"]
    assert not [v for v in ingest["volumes"] if v["name"] == "tls"]
    assert not [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-tls")]


ADMISSION = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def test_kustomize_admission_policy_equals_the_charts(helm: Helm) -> None:
    chart = {obj["kind"]: obj for obj in helm.template() if obj["kind"] in ADMISSION}
    manifests = {obj["kind"]: obj for obj in manifest_objects("admissionpolicy.yaml")
                 if obj["kind"] in ADMISSION}  # fmt: skip
    assert set(chart) == set(manifests) == set(ADMISSION)
    for kind in ADMISSION:
        assert manifests[kind]["metadata"]["name"] == chart[kind]["metadata"]["name"]
        assert manifests[kind]["spec"] == chart[kind]["spec"], kind
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert "admissionpolicy.yaml" in kustomization["resources"]


def test_admission_policy_values(helm: Helm) -> None:
    """On by default for the main resource only; off, scoped, exempting and allowlisting
    as the values say."""
    default = {obj["kind"]: obj for obj in helm.template() if obj["kind"] in ADMISSION}
    policy, binding = default["ValidatingAdmissionPolicy"], default[ADMISSION[1]]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["governedagents"]  # not governedagents/status
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"]  # every namespace, as the operator watches
    (exempt,) = policy["spec"]["matchConditions"]
    assert exempt["expression"] == ('!(request.userInfo.username in '
        '["system:serviceaccount:promethios-system:promethios-operator"])')  # fmt: skip
    off = helm.template("--set", "admissionPolicy.enabled=false")
    assert not [obj for obj in off if obj["kind"] in ADMISSION]
    assert "promethios-operator-sidecar-image" not in {o["metadata"]["name"] for o in off}
    scoped = helm.template("--set", f"watchNamespaces={{a,b}},{STANDALONE}",
                           "--set", "sidecar.allowedImages={ghcr.io/promethios/*,x.io/y:1}",
                           "--set", "admissionPolicy.validationActions={Warn,Audit}")  # fmt: skip
    binding = next(obj for obj in scoped if obj["kind"] == ADMISSION[1])
    assert binding["spec"]["validationActions"] == ["Warn", "Audit"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}]  # fmt: skip
    policy = next(obj for obj in scoped if obj["kind"] == ADMISSION[0])
    ingest_sa = "system:serviceaccount:promethios-system:promethios-operator-ingest"
    assert ingest_sa in policy["spec"]["matchConditions"][0]["expression"]
    args = deployment(scoped, "operator")["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = [a.split("=", 1)[1] for a in args if a.startswith("--allowed-sidecar-image=")]
    assert allowed == ["ghcr.io/promethios/*", "x.io/y:1"]


def test_install_with_watch_namespaces_grants_only_those_namespaces(
    helm: Helm, cluster: Any, namespaces: Any
) -> None:
    release_ns, watched, unwatched = namespaces(), namespaces("t-watched"), namespaces()
    release = unique("ns")
    # --take-ownership: the session may already hold the CRDs (applied by other tests).
    helm("install", release, str(CHART), "-n", release_ns, "--take-ownership",
         "--set", f"watchNamespaces={{{watched}}}")  # fmt: skip
    fullname = f"{release}-promethios-operator"
    sa = f"system:serviceaccount:{release_ns}:{fullname}"
    try:
        for kind in ("deployment", "service", "serviceaccount"):
            cluster.kubectl("get", kind, fullname, "-n", release_ns)
        cluster.kubectl("get", "role,rolebinding", fullname, "-n", watched)
        assert cluster.kubectl("get", "clusterrole", fullname, check=False).returncode != 0
        jsonpath = "jsonpath={.spec.template.spec.containers[0].args}"
        args = cluster.kubectl("get", "deployment", fullname, "-n", release_ns,
                               "-o", jsonpath).stdout  # fmt: skip
        assert f"--namespace={watched}" in args
        assert f"--ingest-url=https://{fullname}.{release_ns}.svc:8443" in args
        # The TLS Secret of the release namespace, by name, and no other Secret there.
        tls_secret = f"secrets/{fullname}-ingest-tls"
        for verb in ("get", "create", "patch"):
            assert can_i(cluster, sa, verb, tls_secret, "-n", release_ns), verb
        assert not can_i(cluster, sa, "delete", tls_secret, "-n", release_ns)
        assert not can_i(cluster, sa, "get", "secrets/other", "-n", release_ns)
        assert not can_i(cluster, sa, "create", "secrets", "-n", release_ns)
        assert not can_i(cluster, sa, "list", "secrets", "-n", release_ns)

        assert can_i(cluster, sa, "patch", "governedagents.governance.promethios.ai",
                     "--subresource=status", "-n", watched)  # fmt: skip
        assert can_i(cluster, sa, "create", "deployments.apps", "-n", watched)
        assert can_i(cluster, sa, "create", "secrets", "-n", watched)
        assert can_i(cluster, sa, "watch", "customresourcedefinitions.apiextensions.k8s.io")
        assert not can_i(cluster, sa, "get", "secrets", "-n", unwatched)
        assert not can_i(cluster, sa, "list", "secrets", "--all-namespaces")
        assert not can_i(cluster, sa, "create", "deployments.apps", "-n", unwatched)
        assert not can_i(cluster, sa, "patch", "governedagents.governance.promethios.ai",
                         "--subresource=status", "-n", unwatched)  # fmt: skip
        assert not can_i(cluster, sa, "delete", "governedagents.governance.promethios.ai",
                         "-n", watched)  # fmt: skip
    finally:
        helm("uninstall", release, "-n", release_ns, "--wait=false")
    # crds.keep: uninstalling leaves the CRDs (and so every GovernedAgent) in place.
    crds = cluster.kubectl("get", "crd", *CRD_NAMES, "-o", "name").stdout.split()
    assert len(crds) == 3
    assert cluster.kubectl("get", "deployment", fullname, "-n", release_ns,
                           check=False).returncode != 0  # fmt: skip


def test_switch_to_standalone_ingest_grants_its_service_account_least_privilege(
    helm: Helm, cluster: Any, namespaces: Any
) -> None:
    release_ns, watched, unwatched = namespaces(), namespaces("t-watched"), namespaces()
    release = unique("ing")
    common = ["--set", f"crds.install=false,watchNamespaces={{{watched}}}"]
    helm("install", release, str(CHART), "-n", release_ns, *common)
    # Switching modes is an upgrade: nothing immutable changes (selectors, Service name).
    upgraded = helm("upgrade", release, str(CHART), "-n", release_ns, *common,
                    "--set", STANDALONE)  # fmt: skip
    fullname = f"{release}-promethios-operator"
    ingest_name = f"{fullname}-ingest"
    assert f"deployment/{ingest_name}" in upgraded.stdout  # NOTES
    operator_sa = f"system:serviceaccount:{release_ns}:{fullname}"
    sa = f"system:serviceaccount:{release_ns}:{ingest_name}"
    status = ("governedagents.governance.promethios.ai", "--subresource=status")
    try:
        cluster.kubectl("get", "deployment,serviceaccount,poddisruptionbudget", ingest_name,
                        "-n", release_ns)  # fmt: skip
        cluster.kubectl("get", "role,rolebinding", ingest_name, "-n", watched)
        assert cluster.kubectl("get", "clusterrole", ingest_name, check=False).returncode != 0
        jsonpath = "jsonpath={.spec.template.spec.containers[0].args}"
        args = cluster.kubectl("get", "deployment", fullname, "-n", release_ns,
                               "-o", jsonpath).stdout  # fmt: skip
        assert "--no-ingest" in args and f"--ingest-url=https://{fullname}.{release_ns}.svc" in args
        selector = cluster.kubectl("get", "service", fullname, "-n", release_ns,
                                   "-o", "jsonpath={.spec.selector}").stdout  # fmt: skip
        assert "promethios-operator-ingest" in selector, selector

        # What promethios ingest calls (operator/promethios/kube/governance.py).
        granted = [
            ("patch", *status),
            ("get", "governedagents.governance.promethios.ai"),
            ("list", "governedagents.governance.promethios.ai"),
            ("watch", "governedagents.governance.promethios.ai"),
            ("get", "governancepolicies.governance.promethios.ai"),
            ("list", "governancepolicies.governance.promethios.ai"),
            ("watch", "governancepolicies.governance.promethios.ai"),
            # shared budgets: status.usage of the policy (issue 12)
            ("patch", "governancepolicies.governance.promethios.ai", "--subresource=status"),
            ("get", "alertsinks.governance.promethios.ai"),
            ("patch", "alertsinks.governance.promethios.ai", "--subresource=status"),
            ("list", "secrets"),
            ("watch", "secrets"),
            ("get", "secrets"),
            ("create", "events"),
            ("patch", "events"),
        ]
        for check in granted:
            assert can_i(cluster, sa, *check, "-n", watched), check
        # Nothing else: no workloads, no deletes, no writes but status and Events.
        denied = [
            ("create", "deployments.apps"),
            ("patch", "deployments.apps"),
            ("create", "pods"),
            ("create", "secrets"),
            ("patch", "secrets"),
            ("update", *status),
            ("patch", "governedagents.governance.promethios.ai"),
            ("create", "governedagents.governance.promethios.ai"),
            ("update", "governedagents.governance.promethios.ai", "--subresource=finalizers"),
            ("patch", "governancepolicies.governance.promethios.ai"),
            ("list", "alertsinks.governance.promethios.ai"),
            ("create", "networkpolicies.networking.k8s.io"),
            ("create", "rolebindings.rbac.authorization.k8s.io"),
            ("impersonate", "serviceaccounts"),
            ("*", "*"),
        ]
        for resource in ("governedagents.governance.promethios.ai", "secrets", "events",
                         "deployments.apps", "pods", "configmaps", "services"):  # fmt: skip
            denied += [("delete", resource), ("deletecollection", resource)]
        for check in denied:
            assert not can_i(cluster, sa, *check, "-n", watched), check
        # Nothing outside the watched namespaces, and nothing cluster-scoped.
        assert not can_i(cluster, sa, "get", "secrets", "-n", unwatched)
        assert not can_i(cluster, sa, "list", "secrets", "-n", release_ns)
        assert not can_i(cluster, sa, "list", "secrets", "--all-namespaces")
        assert not can_i(cluster, sa, "patch", *status, "-n", unwatched)
        assert not can_i(cluster, sa, "list", "governedagents.governance.promethios.ai",
                         "--all-namespaces")  # fmt: skip
        assert not can_i(cluster, sa, "list", "namespaces")
        assert not can_i(cluster, sa, "get", "customresourcedefinitions.apiextensions.k8s.io")
        # The operator keeps its own permissions.
        assert can_i(cluster, operator_sa, "create", "deployments.apps", "-n", watched)
        assert can_i(cluster, operator_sa, "patch", *status, "-n", watched)
    finally:
        helm("uninstall", release, "-n", release_ns, "--wait=false")
    assert cluster.kubectl("get", "role", ingest_name, "-n", watched,
                           check=False).returncode != 0  # fmt: skip


def test_clusterwide_install_cannot_escalate(helm: Helm, cluster: Any, namespaces: Any) -> None:
    release_ns, other = namespaces(), namespaces()
    release = unique("cw")
    helm("install", release, str(CHART), "-n", release_ns, "--set", "crds.install=false")
    sa = f"system:serviceaccount:{release_ns}:{release}-promethios-operator"
    selector = f"app.kubernetes.io/instance={release}"
    try:
        objects = cluster.kubectl("get", "clusterrole", "-o", "name", "-l", selector).stdout.split()
        assert sorted(objects) == [
            f"clusterrole.rbac.authorization.k8s.io/{release}-promethios-operator",
            f"clusterrole.rbac.authorization.k8s.io/{release}-promethios-operator-cluster",
            f"clusterrole.rbac.authorization.k8s.io/{release}-promethios-operator-sidecar-image",
        ]
        # The sidecar-image ClusterRole is for an administrator to bind; the chart binds none.
        role_refs = "jsonpath={.items[*].roleRef.name}"
        bindings = cluster.kubectl("get", "clusterrolebinding", "-l", selector,
                                   "-o", role_refs).stdout.split()  # fmt: skip
        assert f"{release}-promethios-operator-sidecar-image" not in bindings
        assert not can_i(cluster, sa, "create", "governedagents.governance.promethios.ai",
                         "--subresource=sidecarimage", "-n", other)  # fmt: skip
        policy = f"{release}-promethios-operator-requester-permissions"
        cluster.kubectl("get", "validatingadmissionpolicy,validatingadmissionpolicybinding",
                        policy)  # fmt: skip
        assert can_i(cluster, sa, "list", "secrets", "--all-namespaces")
        assert can_i(cluster, sa, "update", "governedagents.governance.promethios.ai",
                     "--subresource=finalizers", "-n", other)  # fmt: skip
        assert can_i(cluster, sa, "create", "events", "-n", other)
        for verb, resource in [("escalate", "clusterroles.rbac.authorization.k8s.io"),
                               ("bind", "clusterroles.rbac.authorization.k8s.io"),
                               ("bind", "roles.rbac.authorization.k8s.io"),
                               ("create", "rolebindings.rbac.authorization.k8s.io"),
                               ("impersonate", "serviceaccounts"),
                               ("create", "pods"),
                               ("create", "pods/exec"),
                               ("delete", "namespaces"),
                               ("create", "customresourcedefinitions.apiextensions.k8s.io"),
                               ("*", "*")]:  # fmt: skip
            assert not can_i(cluster, sa, verb, resource, "-n", other), (verb, resource)
        assert not can_i(cluster, sa, "*", "*", "--all-namespaces")
    finally:
        helm("uninstall", release, "-n", release_ns, "--wait=false")
    left = cluster.kubectl("get", "clusterrole,validatingadmissionpolicy,"
                           "validatingadmissionpolicybinding", "-o", "name",
                           "-l", selector).stdout.strip()  # fmt: skip
    assert left == ""


# ---- kustomize base and samples -----------------------------------------------------------


def test_kustomize_base_installs_and_samples_are_accepted(cluster: Any, namespaces: Any) -> None:
    applied = cluster.kubectl("apply", "-k", str(MANIFESTS))
    try:
        for crd in CRD_NAMES:
            assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in applied.stdout
        assert "deployment.apps/promethios-operator" in applied.stdout
        policy = "promethios-operator-requester-permissions"
        assert f"validatingadmissionpolicy.admissionregistration.k8s.io/{policy}" in applied.stdout
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                        *[f"crd/{name}" for name in CRD_NAMES])  # fmt: skip
        cluster.kubectl("get", "deployment,service,serviceaccount", "promethios-operator",
                        "-n", "promethios-system")  # fmt: skip
        namespace = namespaces("t-samples")
        result = cluster.kubectl("apply", "--dry-run=server", "-n", namespace,
                                 "-f", str(MANIFESTS / "samples"))  # fmt: skip
        for name in ("governancepolicy.governance.promethios.ai/baseline",
                     "secret/openai-credentials",
                     "alertsink.governance.promethios.ai/governance-webhook",
                     "governedagent.governance.promethios.ai/support-bot"):  # fmt: skip
            assert f"{name} created (server dry run)" in result.stdout, result.stdout
    finally:
        # Everything but the CRDs, which other tests of the session use.
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false",
                        *[f"-f={MANIFESTS / name}" for name in
                          ("deployment.yaml", "poddisruptionbudget.yaml", "service.yaml",
                           "rbac.yaml", "admissionpolicy.yaml", "serviceaccount.yaml",
                           "namespace.yaml")])  # fmt: skip
