"""The ingest API over TLS with a certificate the operator keeps, on a real API server.

A ``promethios operator`` subprocess (in-process ingest) runs per mode:

- ``auto``: the operator issues its CA and serving certificate into the Secret; the
  ingest serves it; a report over https verified against the published CA bundle is
  accepted, a client trusting another CA is refused in the handshake, plain HTTP to the
  TLS port gets no answer, ``/metrics`` is only on the plain metrics port. The agent's
  ConfigMap carries the CA bundle and the https URL. A restarted operator keeps the
  valid certificate (the Secret is not written again); a lost Secret is re-issued with a
  new CA, which the ingest serves and every agent's ConfigMap receives.
- ``cert-manager``: the operator waits for the Secret cert-manager fills, serves it,
  follows its renewal, and never writes it.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import os
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kube_helpers
import pytest
import yaml
from cryptography import x509
from kube_helpers import free_port

from promethios.builders.tls import ServingIdentity, ServingMaterial, decide, issue
from promethios_local.demo.run import promethios_argv
from promethios_local.localcluster.process import ManagedProcess

pytestmark = pytest.mark.usefixtures("crds_installed")
API_VERSION = "governance.promethios.ai/v1alpha1"
SECRET = "promethios-operator-ingest-tls"
AGENT = "tls-bot"
wait_for = functools.partial(kube_helpers.wait_for, timeout=60.0, interval=0.3)


# -- clients ---------------------------------------------------------------------------------


def call(
    url: str, ca_pem: bytes | None = None, body: Any = None, headers: dict[str, str] | None = None
) -> int:
    """One request; the HTTP status. Transport failures (TLS included) raise OSError."""
    context = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else None
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def trusted_by(port: int, ca_pem: bytes) -> bool:
    """Whether the certificate the ingest serves on ``port`` verifies against ``ca_pem``."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            with context.wrap_socket(sock, server_hostname="127.0.0.1"):
                return True
        except ssl.SSLCertVerificationError:
            return False


def foreign_material() -> ServingMaterial:
    """A certificate for the same names from a CA nobody trusts here."""
    identity = ServingIdentity.for_service("promethios-operator", "x", ("127.0.0.1",))
    now = dt.datetime.now(dt.UTC)
    return issue(decide(None, identity, now), None, identity, now)


# -- the operator ----------------------------------------------------------------------------


class Operator:
    """``promethios operator`` whose TLS Secret lives in the test's namespace."""

    def __init__(self, cluster: Any, namespace: str, log_path: Path, mode: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = log_path
        argv = promethios_argv(
            "operator", f"--kubeconfig={cluster.kubeconfig}", f"--namespace={namespace}",
            f"--ingest-port={self.port}", f"--ingest-metrics-port={self.metrics_port}",
            f"--ingest-url={self.url}", "--liveness-port=0", "--resync-seconds=600",
            f"--tls-mode={mode}", f"--tls-secret-namespace={namespace}",
            "--tls-check-seconds=1",
        )  # fmt: skip
        self.process = ManagedProcess("operator", argv, log_path, dict(os.environ))

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def check(self) -> None:
        code = self.process.exit_code()
        if code is not None:
            pytest.fail(f"the operator exited ({code}):\n{self.process.log_tail(60)}")

    def ready(self) -> bool:
        try:
            return call(self.metrics + "/readyz") == 200
        except OSError:
            return False

    def start(self, wait: bool = True) -> None:
        self.process.start()
        if wait:
            wait_for(self.ready, "the ingest API to be ready", check=self.check)

    def stop(self) -> None:
        self.process.stop(timeout=15)


@dataclass
class Kube:
    cluster: Any
    ns: str

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.cluster.kubectl("-n", self.ns, "get", kind, name, "-o", "json",
                                   "--ignore-not-found").stdout  # fmt: skip
        return json.loads(out) if out.strip() else None

    def apply(self, *objects: dict[str, Any], manager: str = "promethios-tests") -> None:
        self.cluster.kubectl("-n", self.ns, "apply", "--server-side", "--force-conflicts",
                             f"--field-manager={manager}", "-f", "-",
                             input=yaml.safe_dump_all(objects))  # fmt: skip

    def secret_data(self, name: str) -> dict[str, bytes]:
        data = (self.get("secret", name) or {}).get("data") or {}
        return {key: base64.b64decode(value) for key, value in data.items()}


def tls_secret(namespace: str, material: ServingMaterial) -> dict[str, Any]:
    """The Secret as cert-manager writes it: tls.crt, tls.key and ca.crt (no CA key)."""
    plain = ServingMaterial(material.cert_pem, material.key_pem, material.ca_bundle_pem)
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": SECRET, "namespace": namespace},
            "data": plain.secret_data()}  # fmt: skip


def create_agent(kube: Kube) -> None:
    policy = {"apiVersion": API_VERSION, "kind": "GovernancePolicy",
              "metadata": {"name": "policy", "namespace": kube.ns}, "spec": {}}  # fmt: skip
    agent = {"apiVersion": API_VERSION, "kind": "GovernedAgent",
             "metadata": {"name": AGENT, "namespace": kube.ns},
             "spec": {"image": "registry.example/agent:1",
                      "modelProvider": {"type": "openai"},
                      "governance": {"policyRef": {"name": "policy"}}}}  # fmt: skip
    kube.apply(policy, agent)
    kube.cluster.kubectl("-n", kube.ns, "wait", "--for=condition=Ready",
                         f"governedagent/{AGENT}", "--timeout=60s")  # fmt: skip


def violation_request(kube: Kube) -> tuple[dict[str, Any], dict[str, str]]:
    agent = kube.get("governedagent", AGENT) or {}
    key = kube.secret_data(f"{AGENT}-api-key")["apiKey"].decode()
    agent_id = f"{kube.ns}/{AGENT}"
    body = {
        "agentId": agent_id,
        "violation": {
            "type": "pii.email",
            "severity": "high",
            "description": "tls test",
            "context": {},
        },
    }
    headers = {"Authorization": f"Bearer {key}", "X-Agent-ID": agent_id,
               "X-Governance-ID": agent["status"]["governanceIdentity"]}  # fmt: skip
    return body, headers


# -- fixtures --------------------------------------------------------------------------------


@dataclass
class Env:
    kube: Kube
    operator: Operator


def _namespace_env(cluster: Any, tmp: Path, mode: str) -> Iterator[Env]:
    ns = f"t-tls-{mode.replace('-', '')}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    operator = Operator(cluster, ns, tmp / "operator.log", mode)
    try:
        yield Env(Kube(cluster, ns), operator)
    finally:
        operator.stop()
        if os.environ.get("PROMETHIOS_SHOW_OPERATOR_LOG"):
            print(operator.process.log_tail(300))
        cluster.kubectl("delete", "namespace", "--wait=false", ns, check=False)


@pytest.fixture(scope="module")
def auto(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """An operator in ``auto`` mode with one Ready agent."""
    for env in _namespace_env(cluster, tmp_path_factory.mktemp("tls-auto"), "auto"):
        env.operator.start()
        create_agent(env.kube)
        yield env


# -- auto ------------------------------------------------------------------------------------


def test_operator_issues_the_certificate_and_the_ingest_serves_it(auto: Env) -> None:
    kube, operator = auto.kube, auto.operator
    secret = kube.get("secret", SECRET) or {}
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "promethios-operator"
    data = kube.secret_data(SECRET)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    names = (
        x509.load_pem_x509_certificate(data["tls.crt"])
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert f"promethios-operator.{kube.ns}.svc" in names.get_values_for_type(x509.DNSName)
    assert f"promethios-operator.{kube.ns}.svc.cluster.local" in names.get_values_for_type(
        x509.DNSName
    )
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]

    # The agent's ConfigMap carries the CA bundle and the https URL; the pod mounts both.
    config_map = kube.get("configmap", f"{AGENT}-governance") or {}
    assert config_map["data"]["ca.crt"].encode() == data["ca.crt"]
    config = json.loads(config_map["data"]["config.json"])
    assert config["ingest"]["url"] == operator.url
    assert config["ingest"]["caFile"] == "/etc/promethios/ca.crt"
    pod = (kube.get("deployment", AGENT) or {})["spec"]["template"]["spec"]
    items = next(v["configMap"]["items"] for v in pod["volumes"] if "configMap" in v)
    assert {"key": "ca.crt", "path": "ca.crt"} in items

    # A report over https, verified against the published bundle, is recorded.
    body, headers = violation_request(kube)
    url = operator.url + "/api/v1/governance/violations"
    wait_for(lambda: call(url, data["ca.crt"], body, headers) == 200, "the violation over https")
    # A client trusting another CA refuses the server during the handshake.
    with pytest.raises(urllib.error.URLError) as refused:
        call(url, foreign_material().ca_bundle_pem, body, headers)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError), refused.value
    # Plain HTTP to the TLS port gets no HTTP answer.
    with pytest.raises(OSError) as plain:
        call(f"http://127.0.0.1:{operator.port}/api/v1/governance/violations", None, body, headers)
    assert not isinstance(plain.value, urllib.error.HTTPError), plain.value

    # /metrics only on the plain metrics port (and no reports there).
    metrics = urllib.request.urlopen(operator.metrics + "/metrics", timeout=10).read().decode()
    assert f'promethios_violations_total{{name="{AGENT}",namespace="{kube.ns}"' in metrics
    assert call(operator.url + "/metrics", data["ca.crt"]) == 404
    assert call(operator.metrics + "/api/v1/governance/violations", None, body, headers) == 404


def test_a_valid_certificate_is_kept_and_a_lost_one_reissued(auto: Env) -> None:
    kube, operator = auto.kube, auto.operator
    before = kube.get("secret", SECRET) or {}
    first_ca = kube.secret_data(SECRET)["ca.crt"]
    config_map = kube.get("configmap", f"{AGENT}-governance") or {}

    # A restarted operator reads the Secret before it serves: still valid, so kept.
    operator.stop()
    operator.start()
    assert trusted_by(operator.port, first_ca)
    after = kube.get("secret", SECRET) or {}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    unchanged = kube.get("configmap", f"{AGENT}-governance") or {}
    assert unchanged["metadata"]["resourceVersion"] == config_map["metadata"]["resourceVersion"]

    # A lost Secret is re-issued (new CA) at the next check; the in-process ingest serves
    # it and the agent's ConfigMap receives the new bundle, which rolls the pods.
    kube.cluster.kubectl("-n", kube.ns, "delete", "secret", SECRET)
    renewed = wait_for(
        lambda: (data := kube.secret_data(SECRET)).get("ca.crt") not in (None, first_ca) and data,
        "the operator to issue a new certificate",
    )
    wait_for(lambda: trusted_by(operator.port, renewed["ca.crt"]), "the ingest to serve it")
    assert not trusted_by(operator.port, first_ca)
    wait_for(
        lambda: ((kube.get("configmap", f"{AGENT}-governance") or {})["data"]["ca.crt"].encode()
                 == renewed["ca.crt"]),
        "the agent's ConfigMap to carry the new CA bundle",
    )  # fmt: skip
    hash_key = "promethios.ai/config-hash"
    old_hash = config_map["metadata"]["annotations"][hash_key]
    wait_for(
        lambda: (
            (kube.get("deployment", AGENT) or {})["spec"]["template"]["metadata"]["annotations"][
                hash_key
            ]
            != old_hash
        ),
        "the pod template to roll",
    )
    body, headers = violation_request(kube)
    url = operator.url + "/api/v1/governance/violations"
    assert call(url, renewed["ca.crt"], body, headers) == 200


# -- cert-manager ----------------------------------------------------------------------------


@pytest.fixture
def cert_manager(cluster: Any, tmp_path: Path) -> Iterator[Env]:
    yield from _namespace_env(cluster, tmp_path, "cert-manager")


def test_cert_manager_mode_serves_the_secret_it_never_writes(cert_manager: Env) -> None:
    kube, operator = cert_manager.kube, cert_manager.operator
    operator.start(wait=False)
    wait_for(
        lambda: "waiting for the ingest certificate" in operator.log_path.read_text(),
        "the operator to wait for cert-manager's Secret",
        check=operator.check,
    )
    assert kube.get("secret", SECRET) is None  # the operator never creates it
    first = foreign_material()
    kube.apply(tls_secret(kube.ns, first), manager="cert-manager")
    wait_for(operator.ready, "the ingest API to be ready", check=operator.check)
    assert trusted_by(operator.port, first.ca_bundle_pem)

    # cert-manager renews: the ingest serves the new certificate at the next check.
    second = foreign_material()
    kube.apply(tls_secret(kube.ns, second), manager="cert-manager")
    wait_for(lambda: trusted_by(operator.port, second.ca_bundle_pem), "the renewed certificate")
    create_agent(kube)
    config_map = kube.get("configmap", f"{AGENT}-governance") or {}
    assert config_map["data"]["ca.crt"].encode() == second.ca_bundle_pem
    body, headers = violation_request(kube)
    url = operator.url + "/api/v1/governance/violations"
    wait_for(lambda: call(url, second.ca_bundle_pem, body, headers) == 200, "a report")
    out = kube.cluster.kubectl("-n", kube.ns, "get", "secret", SECRET, "-o", "json",
                               "--show-managed-fields").stdout  # fmt: skip
    managers = {entry["manager"] for entry in json.loads(out)["metadata"]["managedFields"]}
    assert managers == {"cert-manager"}, managers
