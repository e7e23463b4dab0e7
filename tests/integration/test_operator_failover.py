"""Two operator replicas against one real API server: one Lease, one reconciler, both
ingest APIs serving, and the failover times when the leader is killed or stopped.

The replicas run as subprocesses (``promethios operator``) with the default election
timing (lease 15 s, renew deadline 10 s, retry 2 s), watching the test's namespace only,
with plain-HTTP ingest APIs on their own ports. Failover is measured from the signal to
the moment a GovernedAgent created right after it has its Deployment (the new leader has
started kopf, listed everything and reconciled).
"""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kube_helpers import free_port, wait_for

from promethios_local.demo.run import promethios_argv
from promethios_local.localcluster.process import ManagedProcess

LEASE = "promethios-operator-leader"
LEASE_DURATION, RETRY_PERIOD = 15.0, 2.0
#: A killed leader's Lease is free LEASE_DURATION after its last renewal; the standby
#: notices within a retry period, then kopf starts and reconciles.
KILL_BOUND = LEASE_DURATION + RETRY_PERIOD + 8.0
#: A released Lease is taken at the standby's next try: well under one lease duration.
RELEASE_BOUND = LEASE_DURATION

POLICY = {"apiVersion": "governance.promethios.ai/v1alpha1", "kind": "GovernancePolicy",
          "metadata": {"name": "policy"}, "spec": {}}  # fmt: skip


def agent(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "governance.promethios.ai/v1alpha1",
        "kind": "GovernedAgent",
        "metadata": {"name": name},
        "spec": {
            "image": "example.com/agent:1",
            "modelProvider": {"type": "openai", "credentialsSecretRef": {"name": "credentials"}},
            "governance": {"policyRef": {"name": "policy"}},
        },
    }


class Replica:
    """One ``promethios operator`` process with its own ingest ports and identity."""

    def __init__(self, cluster: Any, ns: str, name: str, log_dir: Path, url: str) -> None:
        self.identity = f"{name}_{uuid.uuid4().hex[:6]}"
        self.ingest_port, self.metrics_port = free_port(), free_port()
        self.liveness_port = free_port()
        self.log_path = log_dir / f"{self.identity}.log"
        argv = promethios_argv(
            "operator",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--namespace={ns}",
            "--tls-mode=off",
            # One URL for every replica, as behind the chart's Service: a new leader
            # renders the agents' ConfigMaps as the old one did.
            f"--ingest-url={url}",
            f"--ingest-port={self.ingest_port}",
            f"--ingest-metrics-port={self.metrics_port}",
            f"--tls-secret-namespace={ns}",
            "--leader-elect",
            f"--leader-election-identity={self.identity}",
            f"--liveness-port={self.liveness_port}",
            "--resync-seconds=600",
        )
        self.process = ManagedProcess(self.identity, argv, self.log_path, {"PYTHONUNBUFFERED": "1"})

    def start(self) -> Replica:
        self.process.start()
        wait_for(lambda: self.get("/readyz", self.metrics_port) == 200,
                 f"{self.identity}'s ingest API to be ready", timeout=60,
                 check=self.alive)  # fmt: skip
        return self

    def alive(self) -> None:
        code = self.process.exit_code()
        if code is not None:
            pytest.fail(f"{self.identity} exited ({code}):\n{self.process.log_tail(40)}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, port: int) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def heartbeat(self, agent_id: str, identity: str, key: str) -> int:
        """A seed-shaped heartbeat to this replica's ingest API; the HTTP status."""
        body = {"agentId": agent_id, "status": "active", "uptime": 1,
                "lastActivity": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ingest_port}/api/v1/agents/heartbeat",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {key}",
                "X-Agent-ID": agent_id,
                "X-Governance-ID": identity,
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code


class Cluster:
    """kubectl in the test's namespace."""

    def __init__(self, cluster: Any, ns: str) -> None:
        self.cluster, self.ns = cluster, ns

    def json(self, *args: str) -> dict[str, Any] | None:
        out = self.cluster.kubectl("-n", self.ns, *args, "-o", "json", "--ignore-not-found")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def apply(self, obj: dict[str, Any]) -> None:
        self.cluster.kubectl("-n", self.ns, "apply", "-f", "-", input=json.dumps(obj))

    def holder(self) -> str:
        lease = self.json("get", "lease", LEASE) or {}
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def deployed(self, name: str) -> bool:
        return self.json("get", "deployment", name) is not None

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.json("get", "governedagent", name) or {}).get("status") or {})

    def api_key(self, name: str) -> str:
        secret = self.json("get", "secret", f"{name}-api-key") or {}
        return base64.b64decode(secret["data"]["apiKey"]).decode()


SHARED_URL = "http://127.0.0.1:9"  # the sidecars' URL; these tests run no sidecar


@pytest.fixture
def kube(cluster: Any, crds_installed: list[str], namespace: str) -> Cluster:
    k = Cluster(cluster, namespace)
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "credentials",
                    "--from-literal=apiKey=sk-test")  # fmt: skip
    k.apply(POLICY)
    return k


@pytest.fixture
def replicas(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        yield started
    finally:
        for replica in started:
            replica.process.stop(timeout=20)


def spawn(cluster: Any, kube: Cluster, name: str, tmp_path: Path, into: list[Replica]) -> Replica:
    replica = Replica(cluster, kube.ns, name, tmp_path, SHARED_URL)
    into.append(replica)
    return replica.start()


def failover(kube: Cluster, old: Replica, new: Replica, signum: int, agent_name: str) -> float:
    """Signal the leader, create an agent at once; seconds until ``new`` has reconciled it."""
    start = time.monotonic()
    old.process.signal(signum)
    kube.apply(agent(agent_name))
    wait_for(lambda: kube.deployed(agent_name), f"{agent_name} reconciled by {new.identity}",
             timeout=KILL_BOUND + 30, interval=0.1, check=new.alive)  # fmt: skip
    return time.monotonic() - start


def test_one_leader_reconciles_every_replica_ingests_and_failover_is_measured(
    cluster: Any, kube: Cluster, replicas: list[Replica], tmp_path: Path
) -> None:
    a = spawn(cluster, kube, "replica-a", tmp_path, replicas)
    b = spawn(cluster, kube, "replica-b", tmp_path, replicas)
    wait_for(lambda: kube.holder() in (a.identity, b.identity), "a leader", timeout=30)
    leader, follower = (a, b) if kube.holder() == a.identity else (b, a)
    wait_for(lambda: "waiting for the Lease" in follower.log(), "the follower to wait")

    # Exactly one reconciles: the leader creates the children; the follower never starts kopf.
    kube.apply(agent("first"))
    wait_for(lambda: kube.deployed("first"), "the leader to reconcile", timeout=60)
    assert "leading: starting the controller" in leader.log()
    assert "leading: starting the controller" not in follower.log()
    assert "promethios.controller.reconcile" not in follower.log()
    # The follower answers its liveness probe without kopf; the leader's kopf answers it.
    assert follower.get("/healthz", follower.liveness_port) == 200
    assert leader.get("/healthz", leader.liveness_port) == 200
    assert kube.holder() == leader.identity

    # Both replicas' ingest APIs take reports; one sent to the follower lands in the status.
    key, agent_id = kube.api_key("first"), f"{kube.ns}/first"
    identity = kube.status("first")["governanceIdentity"]
    # (each replica's ingest learns the new agent's key from its own watch of the Secrets)
    wait_for(lambda: follower.heartbeat(agent_id, identity, key) == 202,
             "the follower's ingest API to accept the agent's key")  # fmt: skip
    wait_for(lambda: (kube.status("first").get("heartbeat") or {}).get("state") == "active",
             "the follower's heartbeat in the status", timeout=45)  # fmt: skip
    wait_for(lambda: leader.heartbeat(agent_id, identity, key) == 202,
             "the leader's ingest API to accept the agent's key")  # fmt: skip

    # SIGKILL: no release; the standby takes over once the Lease has expired.
    killed = failover(kube, leader, follower, signal.SIGKILL, "after-kill")
    assert kube.holder() == follower.identity
    wait_for(lambda: follower.get("/healthz", follower.liveness_port) == 200,
             "kopf's liveness endpoint on the new leader")  # fmt: skip
    print(f"failover after SIGKILL of the leader: {killed:.1f} s")
    assert killed < KILL_BOUND
    assert killed > LEASE_DURATION - RETRY_PERIOD  # it did wait for the Lease to expire

    # A new standby joins; SIGTERM to the leader releases the Lease: a faster handover.
    leader, standby = follower, spawn(cluster, kube, "replica-c", tmp_path, replicas)
    wait_for(lambda: "waiting for the Lease" in standby.log(), "the new standby to wait")
    assert standby.heartbeat(agent_id, identity, key) == 202
    graceful = failover(kube, leader, standby, signal.SIGTERM, "after-term")
    print(f"failover after SIGTERM of the leader (Lease released): {graceful:.1f} s")
    assert kube.holder() == standby.identity
    assert graceful < RELEASE_BOUND
    assert leader.process.wait(20) and leader.process.exit_code() == 0
    assert "released the Lease" in leader.log()
