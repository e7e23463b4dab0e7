"""The operator runs on exactly the chart's RBAC: create -> Ready -> violation -> quarantine.

The chart is installed with ``watchNamespaces`` (so the operator gets namespaced Roles);
then ``promethios operator`` runs locally with a kubeconfig holding a token of the chart's
ServiceAccount (the pod on the kwok node never runs), with the chart's arguments (only
ports and the ingest URL rewritten for this machine). The operator issues the ingest API's
certificate into the one Secret the chart lets it write in its namespace. The samples from
``manifests/samples/`` are applied with ``onBreach: Quarantine``; a critical violation
posted over https (verified against the Secret's CA) to the in-process ingest API must
quarantine the agent. Any permission the chart forgot shows up as a stuck step and a
``Forbidden`` in the operator's log.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kube_helpers
import pytest
import yaml
from kube_helpers import free_port, kubectl_as, service_account_kubeconfig, stop_process
from test_install import CHART, MANIFESTS, Helm, helm_path, unique

pytestmark = pytest.mark.usefixtures("crds_installed")
AGENT = "support-bot"


#: This module's patience for a wait_for without an explicit timeout.
WAIT = 60.0
wait_for = functools.partial(kube_helpers.wait_for, timeout=WAIT, interval=0.3)


@pytest.fixture
def installed(cluster: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(release namespace, watched namespace) of a chart install watching one namespace."""
    helm = Helm(helm_path(), Path(cluster.kubeconfig), tmp_path / "helm")
    release_ns, watched, release = unique("t-rbac-op"), unique("t-rbac-agents"), unique("flow")
    for namespace in (release_ns, watched):
        cluster.kubectl("create", "namespace", namespace)
    helm("install", release, str(CHART), "-n", release_ns, "--set", "crds.install=false",
         "--set", "replicaCount=0", "--set", f"watchNamespaces={{{watched}}}")  # fmt: skip
    try:
        yield release_ns, watched
    finally:
        helm("uninstall", release, "-n", release_ns, "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", "--wait=false", release_ns, watched, check=False)


def test_operator_works_with_exactly_the_charts_rbac(
    cluster: Any, installed: tuple[str, str], tmp_path: Path
) -> None:
    release_ns, watched = installed
    sa_name = cluster.kubectl("get", "sa", "-n", release_ns, "-o", "name").stdout.split()
    sa = next(name.split("/", 1)[1] for name in sa_name if "promethios-operator" in name)
    kubeconfig = service_account_kubeconfig(cluster, release_ns, sa, tmp_path / "sa.kubeconfig")
    # The token really is the ServiceAccount's: it cannot read Secrets in its own namespace.
    denied = kubectl_as(kubeconfig, "get", "secrets", "-n", release_ns)
    assert "forbidden" in denied.stderr.lower(), denied.stderr

    port, metrics_port = free_port(), free_port()
    log_path = tmp_path / "operator.log"
    out = cluster.kubectl("get", "deployment", "-n", release_ns, "-o", "json").stdout
    chart_args = json.loads(out)["items"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    local = ("--ingest-port=", "--ingest-metrics-port=", "--ingest-url=", "--liveness-port=")
    args = [arg for arg in chart_args[1:] if not arg.startswith(local)]
    assert f"--tls-secret-namespace={release_ns}" in args and "--tls-mode=auto" in args, args
    argv = [sys.executable, "-m", "promethios.cli", "operator", *args, f"--kubeconfig={kubeconfig}",
            f"--ingest-port={port}", f"--ingest-metrics-port={metrics_port}",
            f"--ingest-url=https://127.0.0.1:{port}", "--liveness-port=0"]  # fmt: skip

    def issued() -> list[dict[str, Any]]:
        out = cluster.kubectl("get", "secret", "-n", release_ns, "-o", "json",
                              "-l", "promethios.ai/component=ingest-tls").stdout  # fmt: skip
        return list(json.loads(out)["items"])

    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        (item,) = wait_for(issued, "the operator to issue the ingest certificate")
        ca = base64.b64decode(item["data"]["ca.crt"]).decode()
        run_flow(cluster, watched, port, ssl.create_default_context(cadata=ca), log_path)
    finally:
        stop_process(process)
    log_text = log_path.read_text()
    assert "Forbidden" not in log_text and " 403" not in log_text, log_text[-4000:]


def run_flow(cluster: Any, ns: str, port: int, context: ssl.SSLContext, log_path: Path) -> None:
    def get(kind: str, name: str) -> dict[str, Any] | None:
        out = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", "--ignore-not-found")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def condition(reason_of: str = "Ready") -> dict[str, Any]:
        status = (get("governedagent", AGENT) or {}).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == reason_of), {})

    documents = []
    for path in sorted((MANIFESTS / "samples").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in documents:
        if doc["kind"] == "GovernedAgent":
            doc["spec"]["governance"]["onBreach"] = "Quarantine"
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(documents))

    try:
        wait_for(lambda: condition().get("status") == "True", "the sample agent to be Ready")
    except pytest.fail.Exception:
        print(log_path.read_text()[-4000:])
        raise
    agent = get("governedagent", AGENT) or {}
    identity = agent["status"]["governanceIdentity"]
    secret = get("secret", f"{AGENT}-api-key") or {}
    api_key = base64.b64decode(secret["data"]["apiKey"]).decode()

    body = {"agentId": f"{ns}/{AGENT}",
            "violation": {"type": "blocked-pattern", "severity": "critical",
                          "description": "no-credentials matched", "context": {}}}  # fmt: skip
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/api/v1/governance/violations",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "X-Agent-ID": f"{ns}/{AGENT}",
                 "X-Governance-ID": identity, "Content-Type": "application/json"},
        method="POST",
    )  # fmt: skip

    def post() -> int:
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return 0 if error.code in (401, 503) else int(error.code)  # keys load async
        except OSError:
            return 0

    assert wait_for(post, "the ingest API to accept the violation", timeout=30) == 200
    wait_for(lambda: get("networkpolicy", f"{AGENT}-quarantine"), "the quarantine policy")
    wait_for(lambda: condition().get("reason") == "Quarantined", "Ready=False/Quarantined")
    # The pods stay, cut off; the sidecar's config says quarantined (it refuses calls).
    configmap = get("configmap", f"{AGENT}-governance") or {}
    assert json.loads(configmap["data"]["config.json"])["quarantined"] is True
    deployment = get("deployment", AGENT) or {}
    assert deployment["spec"].get("replicas", 1) != 0
    counts = (get("governedagent", AGENT) or {})["status"]["governance"]
    assert json.dumps(counts).count("critical") >= 1, counts
