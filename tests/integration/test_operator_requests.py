"""How many API requests the operator sends, counted by a real API server's audit log.

A control plane of its own (the session's has no audit log), the operator as a
subprocess, a handful of agents: each agent's way to Ready costs five writes (its four
children and one status) and no reads, and a periodic resync of agents in sync sends no
request at all (the reconcile reads from watch-fed caches).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_helpers import stop_process, wait_for

from promethios_local.localcluster import LocalCluster, install_crds

AGENTS = 5
NS = "requests"
#: The operator's user agents: its own client and kopf's.
OPERATOR = ("promethios-operator/", "kopf/")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
READS = {"get", "list"}
RESYNC_SECONDS = 20
#: What the operator watches (kopf lists each, then watches it).
WATCHED = {"governedagents", "governancepolicies", "alertsinks", "secrets", "configmaps"}
WATCHED |= {"deployments", "services", "pods", "networkpolicies"}
CRDS = sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml"))


class Audit:
    """The operator's requests in the audit log since a remembered offset."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        data = self.path.read_bytes()
        return data.rfind(b"\n") + 1

    def since(self, start: int) -> tuple[Counter[str], Counter[str]]:
        """(writes, reads) by verb and resource; complete requests only."""
        writes: Counter[str] = Counter()
        reads: Counter[str] = Counter()
        data = self.path.read_bytes()[start : self.offset()]
        for line in data.splitlines():
            event = json.loads(line)
            if not str(event.get("userAgent", "")).startswith(OPERATOR):
                continue
            if event.get("stage") != "ResponseComplete":
                continue
            ref = event.get("objectRef") or {}
            what = f"{event['verb']} {ref.get('resource')}"
            what += f"/{ref['subresource']}" if ref.get("subresource") else ""
            if event["verb"] in WRITES:
                writes[what] += 1
            elif event["verb"] in READS:
                reads[what] += 1
        return writes, reads

    def watched(self) -> set[str]:
        """Resources the operator has watches on (its initial listings are done)."""
        found = set()
        for line in self.path.read_bytes()[: self.offset()].splitlines():
            event = json.loads(line)
            if event.get("verb") == "watch" and str(event.get("userAgent", "")).startswith(
                OPERATOR
            ):
                found.add(str((event.get("objectRef") or {}).get("resource")))
        return found


@pytest.fixture(scope="module")
def audited(tmp_path_factory: Any) -> Iterator[LocalCluster]:
    cluster = LocalCluster(nodes=1, audit_log=True, startup_timeout=300).start()
    try:
        install_crds(cluster, CRDS)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def operator_log(audited: LocalCluster, tmp_path_factory: Any) -> Iterator[Path]:
    log_path = tmp_path_factory.mktemp("requests") / "operator.log"
    audited.kubectl("create", "namespace", NS)
    argv = [
        sys.executable,
        "-m",
        "promethios.cli",
        "operator",
        f"--kubeconfig={audited.kubeconfig}",
        "--no-ingest",
        "--liveness-port=0",
        f"--resync-seconds={RESYNC_SECONDS}",
        f"--tls-secret-namespace={NS}",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: "API server minor version" in log_path.read_text(errors="replace"),
            what="the operator to start",
            timeout=60,
        )
        yield log_path
    finally:
        stop_process(process)


def manifests() -> str:
    policy = {
        "apiVersion": "governance.promethios.ai/v1alpha1",
        "kind": "GovernancePolicy",
        "metadata": {"name": "policy", "namespace": NS},
        "spec": {},
    }
    spec = {
        "image": "example.com/agent:1",
        "modelProvider": {"type": "openai", "credentialsSecretRef": {"name": "credentials"}},
        "governance": {"policyRef": {"name": "policy"}},
    }
    agents = [
        {
            "apiVersion": "governance.promethios.ai/v1alpha1",
            "kind": "GovernedAgent",
            "metadata": {"name": f"agent-{i}", "namespace": NS},
            "spec": spec,
        }
        for i in range(AGENTS)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [policy, *agents]})


def ready_count(cluster: LocalCluster) -> int:
    out = cluster.kubectl("-n", NS, "get", "governedagents", "-o", "json").stdout
    return sum(
        1
        for item in json.loads(out)["items"]
        for c in (item.get("status") or {}).get("conditions") or []
        if c["type"] == "Ready" and c["status"] == "True"
    )


def test_agents_reach_ready_with_writes_only_and_a_resync_sends_nothing(
    audited: LocalCluster, operator_log: Path
) -> None:
    assert audited.audit_log_path is not None
    audit = Audit(audited.audit_log_path)
    wait_for(lambda: audit.watched() >= WATCHED, what="the operator's watches", timeout=60)
    audited.kubectl(
        "-n", NS, "create", "secret", "generic", "credentials", "--from-literal=apiKey=sk-x"
    )
    start = audit.offset()
    audited.kubectl("apply", "-f", "-", input=manifests())
    wait_for(lambda: ready_count(audited) == AGENTS, what="every agent Ready", timeout=120)
    writes, reads = audit.since(start)
    per_agent = {what: count / AGENTS for what, count in writes.items()}
    print(f"to Ready, per agent: writes {per_agent}, reads {dict(reads)}")
    # Each child exactly once and status once (the first waits for Ready); revision 1
    # rides on its Deployment: no ControllerRevision until a revision 2 exists.
    for child in ("secrets", "configmaps", "deployments", "services"):
        assert per_agent.get(f"patch {child}") == 1.0, (child, writes)
    assert per_agent.get("patch governedagents/status") == 1.0, writes
    # The policy's own status (agents using it) is one write for the policy, not per agent.
    assert writes.pop("patch governancepolicies/status", 0) <= 1, writes
    assert sum(writes.values()) / AGENTS <= 5.0, writes
    assert sum(reads.values()) == 0, reads  # everything is read from the watches

    # The next periodic resync pass over agents in sync: no request at all.
    passes = operator_log.read_text().count("resync pass:")
    before = audit.offset()
    wait_for(
        lambda: operator_log.read_text().count("resync pass:") > passes,
        what="a resync pass",
        timeout=3 * RESYNC_SECONDS,
    )
    assert f"resync pass: {AGENTS} agents" in operator_log.read_text()
    writes, reads = audit.since(before)
    assert (dict(writes), dict(reads)) == ({}, {})
