"""The standalone ingest API works with exactly the chart's RBAC for its ServiceAccount.

The chart is installed with ``ingest.mode=standalone`` and ``watchNamespaces`` (so the
ingest ServiceAccount gets a Role in one namespace); then ``promethios ingest`` runs locally,
with the arguments of the chart's ingest Deployment and a kubeconfig holding a token of
the chart's ingest ServiceAccount (the pods on kwok nodes never run); the TLS Secret the
Deployment mounts is written as files here, as the operator would issue it, and every
report is sent over https verified against its CA. A GovernedAgent, its
api-key Secret and an AlertSink are created as :mod:`promethios.ingest.keystore` specifies
(the operator is not involved); the agent posts the seed's heartbeat and two critical
violations. Every call the ingest API makes is exercised: watches of agents, policies and
key Secrets, the status apply, Event create and patch, the AlertSink and its signing Secret.
A permission the chart forgot shows up as a missing status, Event or alert, an error count
in ``/metrics``, or a ``Forbidden`` in the ingest log.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_helpers import (
    api_key_secret,
    b64,
    free_port,
    kubectl_as,
    service_account_kubeconfig,
    stop_process,
    wait_for,
)
from test_install import CHART, Helm, helm_path, unique

from promethios.builders.tls import ServingIdentity, ServingMaterial, decide, issue
from promethios.ingest.alertformat import verify_signature

pytestmark = pytest.mark.usefixtures("crds_installed")
GROUP = "governance.promethios.ai"
AGENT, IDENTITY, KEY = "rbac-bot", "gid-ingest-rbac-1", "ingest-rbac-key-0123456789abcdef"
SIGNING = b"ingest-rbac-signing-secret"


class Hook(BaseHTTPRequestHandler):
    """A webhook receiver; what it got is in ``received`` (set per server)."""

    received: list[tuple[bytes, str]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((body, self.headers.get("X-Promethios-Signature", "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[list[tuple[bytes, str]], str]]:
    received: list[tuple[bytes, str]] = []
    handler = type("RecordingHook", (Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def installed(cluster: Any, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(release namespace, watched namespace, release) of a standalone-ingest install."""
    helm = Helm(helm_path(), Path(cluster.kubeconfig), tmp_path / "helm")
    release_ns, watched = unique("t-ingest-rbac"), unique("t-ingest-agents")
    release = unique("ing")
    for namespace in (release_ns, watched):
        cluster.kubectl("create", "namespace", namespace)
    helm("install", release, str(CHART), "-n", release_ns, "--set", "crds.install=false",
         "--set", "replicaCount=0,ingest.mode=standalone,ingest.replicas=1",
         "--set", "ingest.alertSinkAllowedCIDRs={127.0.0.1/32}",  # the local receiver
         "--set", f"watchNamespaces={{{watched}}}")  # fmt: skip
    try:
        yield release_ns, watched, release
    finally:
        helm("uninstall", release, "-n", release_ns, "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", "--wait=false", release_ns, watched, check=False)


def create_objects(cluster: Any, namespace: str, hook_url: str) -> None:
    """A policy, an agent, its api-key Secret, and an AlertSink with a signing Secret."""
    documents = [
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "GovernancePolicy",
         "metadata": {"name": "baseline"}, "spec": {}},
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "GovernedAgent",
         "metadata": {"name": AGENT},
         "spec": {"image": "example.com/agent:1", "modelProvider": {"type": "openai"},
                  "governance": {"policyRef": {"name": "baseline"}},
                  "alertSinks": [{"name": "hook"}]}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-signing"},
         "data": {"key": b64(SIGNING)}},
        {"apiVersion": f"{GROUP}/v1alpha1", "kind": "AlertSink", "metadata": {"name": "hook"},
         "spec": {"type": "webhook", "url": hook_url, "minSeverity": "high", "maxRetries": 1,
                  "signingSecretRef": {"name": "hook-signing", "key": "key"}}},
    ]  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))
    uid = cluster.kubectl(
        "get", "-n", namespace, "governedagent", AGENT, "-o", "jsonpath={.metadata.uid}"
    ).stdout.strip()
    secret = api_key_secret(AGENT, IDENTITY, KEY, uid)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(secret))


def tls_files(directory: Path) -> ServingMaterial:
    """The certificate the operator would issue, written where the Secret is mounted."""
    identity = ServingIdentity.for_service("ingest", "ns", ("127.0.0.1",))
    now = dt.datetime.now(dt.UTC)
    material = issue(decide(None, identity, now), None, identity, now)
    directory.mkdir()
    (directory / "tls.crt").write_bytes(material.cert_pem)
    (directory / "tls.key").write_bytes(material.key_pem)
    return material


def ingest_argv(
    cluster: Any, release_ns: str, release: str, ports: tuple[int, int], kubeconfig: Path,
    tls_dir: Path,
) -> list[str]:  # fmt: skip
    """The chart's ingest container arguments, run locally on ``ports`` (reports, metrics)
    with ``kubeconfig``, the mounted TLS Secret's files found in ``tls_dir``."""
    name = f"{release}-promethios-operator-ingest"
    out = cluster.kubectl("get", "deployment", name, "-n", release_ns, "-o", "json").stdout
    args = json.loads(out)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "ingest" and "--port=8443" in args and "--metrics-port=9090" in args, args
    assert "--tls-cert-file=/etc/promethios/tls/tls.crt" in args, args
    assert "--alert-sink-allow-cidr=127.0.0.1/32" in args, args
    args = [arg.replace("/etc/promethios/tls", str(tls_dir)) for arg in args[1:]
            if not arg.startswith(("--port=", "--metrics-port="))]  # fmt: skip
    return [sys.executable, "-m", "promethios.cli", "ingest", *args, f"--port={ports[0]}",
            f"--metrics-port={ports[1]}", "--host=127.0.0.1",
            f"--kubeconfig={kubeconfig}"]  # fmt: skip


def test_standalone_ingest_works_with_exactly_the_charts_rbac(
    cluster: Any,
    installed: tuple[str, str, str],
    hook: tuple[list[tuple[bytes, str]], str],
    tmp_path: Path,
) -> None:
    release_ns, watched, release = installed
    received, hook_url = hook
    sa = f"{release}-promethios-operator-ingest"
    kubeconfig = service_account_kubeconfig(
        cluster, release_ns, sa, tmp_path / "ingest-sa.kubeconfig"
    )
    # The token really is the ingest ServiceAccount's: it cannot create Deployments.
    denied = kubectl_as(
        kubeconfig, "create", "deployment", "x", "--image=x", "-n", watched, "--dry-run=server"
    )
    assert "forbidden" in denied.stderr.lower(), denied.stderr
    create_objects(cluster, watched, hook_url)

    ports = free_port(), free_port()
    material = tls_files(tmp_path / "tls")
    argv = ingest_argv(cluster, release_ns, release, ports, kubeconfig, tmp_path / "tls")
    assert f"--namespace={watched}" in argv
    log_path = tmp_path / "ingest.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            context = ssl.create_default_context(cadata=material.ca_bundle_pem.decode())
            bases = (f"https://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
            run_flow(cluster, watched, bases, context, received)
        except BaseException:
            print(log_path.read_text()[-4000:])
            raise
    finally:
        stop_process(process)
    log_text = log_path.read_text()
    assert "Forbidden" not in log_text and " 403" not in log_text, log_text[-4000:]


def run_flow(
    cluster: Any,
    ns: str,
    bases: tuple[str, str],
    context: ssl.SSLContext,
    received: list[tuple[bytes, str]],
) -> None:
    """Reports to ``bases[0]`` (https, verified with ``context``); probes and metrics from
    ``bases[1]`` (plain HTTP)."""
    agent_id = f"{ns}/{AGENT}"
    headers = {"Authorization": f"Bearer {KEY}", "X-Agent-ID": agent_id,
               "X-Governance-ID": IDENTITY, "Content-Type": "application/json"}  # fmt: skip

    def call(path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        base = bases[0] if path.startswith("/api/") else bases[1]
        request = urllib.request.Request(base + path, data=data, headers=headers,
                                         method="POST" if body is not None else "GET")  # fmt: skip
        tls = context if base.startswith("https://") else None
        try:
            with urllib.request.urlopen(request, timeout=10, context=tls) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()
        except OSError:
            return 0, ""

    # Ready once the watches of agents, policies and key Secrets have listed.
    wait_for(lambda: call("/readyz")[0] == 200, "the ingest API to be ready")

    def get(kind: str, *args: str) -> Any:
        out = cluster.kubectl("get", kind, *args, "-n", ns, "-o", "json").stdout
        return json.loads(out)

    def violation_events() -> list[dict[str, Any]]:
        items = get("events", f"--field-selector=involvedObject.name={AGENT}")["items"]
        return [e for e in items if e["reason"] == "PolicyViolation"]

    heartbeat = {"agentId": agent_id, "status": "active", "uptime": 12,
                 "lastActivity": "2024-05-01T10:00:00Z"}  # fmt: skip
    assert call("/api/v1/agents/heartbeat", heartbeat)[0] == 202
    violation = {"agentId": agent_id,
                 "violation": {"type": "blocked-pattern", "severity": "critical",
                               "description": "no-credentials matched", "context": {}}}  # fmt: skip
    # A violation is answered once the status write holding it succeeded.
    code, text = call("/api/v1/governance/violations", violation)
    assert 200 <= code < 300, (code, text)
    wait_for(violation_events, "a PolicyViolation Event (create)")
    # The same type and severity again patches that Event's count.
    code, text = call("/api/v1/governance/violations", violation)
    assert 200 <= code < 300, (code, text)
    wait_for(lambda: [e for e in violation_events() if e.get("count") == 2],
             "the PolicyViolation Event's count to be patched to 2")  # fmt: skip
    assert len(violation_events()) == 1

    status = get("governedagent", AGENT).get("status") or {}
    assert status["heartbeat"]["state"] == "active", status
    assert status["enforcement"]["breach"] == 1, status
    counts = json.dumps(status["governance"])
    assert "critical" in counts, status["governance"]
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    assert conditions["PolicyCompliant"]["status"] == "False", conditions

    # The AlertSink and its signing Secret were read: the alert arrived, signed.
    body, signature = wait_for(lambda: received and received[0], "the webhook alert")
    assert verify_signature(body, SIGNING, signature, time.time())
    assert AGENT in body.decode()

    scrape = call("/metrics")[1]
    errors = [line for line in scrape.splitlines()
              if line.startswith(("promethios_events_total{action=\"error\"}",
                                  "promethios_status_writes_total{result=\"error\"}"))
              and not line.endswith(" 0.0")]  # fmt: skip
    assert errors == [], errors
