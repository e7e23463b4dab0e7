"""The test cluster behaves like a real one: controllers, scheduler, garbage collection,
Pod Security admission, kubectl, and a launcher that leaves no process behind."""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from kube_helpers import wait_for
from kubernetes import client

from promethios_local.localcluster import (
    Binaries,
    BinariesNotFoundError,
    ComponentError,
    LocalCluster,
    find_binaries,
)
from promethios_local.localcluster.binaries import find_versions_env, parse_versions_env

REPO = Path(__file__).resolve().parents[2]
RESTRICTED = "pod-security.kubernetes.io/enforce"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def restricted_pod_spec() -> dict[str, Any]:
    """A pod spec that satisfies the `restricted` Pod Security Standard."""
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "app",
                "image": PAUSE_IMAGE,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }
        ],
    }


def label_restricted(api_client: Any, namespace: str) -> None:
    client.CoreV1Api(api_client).patch_namespace(
        namespace, {"metadata": {"labels": {RESTRICTED: "restricted"}}}
    )


@pytest.fixture
def testenv_binaries(cluster_mode: str) -> Binaries:
    """The launcher's binaries; missing ones fail the test unless another cluster is used."""
    try:
        return find_binaries()
    except BinariesNotFoundError as error:
        if cluster_mode == "local":
            pytest.fail(str(error), pytrace=False)
        pytest.skip(f"launcher test needs the testenv binaries (--cluster={cluster_mode})")


# --------------------------------------------------------------------------- workloads


def _create_deployment(api_client: Any, namespace: str, name: str, replicas: int) -> None:
    labels = {"app": name}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": restricted_pod_spec()},
        },
    }
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, body)


def _pods(api_client: Any, namespace: str, app: str) -> list[Any]:
    return list(
        client.CoreV1Api(api_client)
        .list_namespaced_pod(namespace, label_selector=f"app={app}")
        .items
    )


def _ready_nodes(api_client: Any) -> dict[str, dict[str, str]]:
    nodes = client.CoreV1Api(api_client).list_node().items
    return {
        n.metadata.name: n.metadata.labels or {}
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    }


def test_deployment_rolls_out_on_kwok_nodes_and_is_garbage_collected(
    api_client: Any, namespace: str, cluster_mode: str
) -> None:
    apps = client.AppsV1Api(api_client)
    label_restricted(api_client, namespace)  # the spec is restricted-compliant
    _create_deployment(api_client, namespace, "web", replicas=3)

    # (a) Deployment -> ReplicaSet -> 3 pods scheduled on (kwok) nodes -> all ready.
    replica_sets = wait_for(
        lambda: apps.list_namespaced_replica_set(namespace, label_selector="app=web").items,
        "the deployment controller to create a ReplicaSet",
        30,
    )
    owner = replica_sets[0].metadata.owner_references[0]
    assert (owner.kind, owner.name) == ("Deployment", "web")
    wait_for(
        lambda: (
            (apps.read_namespaced_deployment_status("web", namespace).status.ready_replicas or 0)
            == 3
        ),
        "3 ready replicas",
        60,
    )
    pods = _pods(api_client, namespace, "web")
    assert len(pods) == 3
    nodes = _ready_nodes(api_client)
    for pod in pods:
        assert pod.spec.node_name in nodes, pod.spec.node_name
        assert pod.status.phase == "Running"
        assert pod.metadata.owner_references[0].kind == "ReplicaSet"
        if cluster_mode == "local":
            assert nodes[pod.spec.node_name].get("type") == "kwok"

    # (b) Deleting the owner garbage-collects the ReplicaSet and its pods.
    apps.delete_namespaced_deployment(
        "web", namespace, body=client.V1DeleteOptions(propagation_policy="Background")
    )
    wait_for(
        lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=web").items,
        "the ReplicaSet to be collected",
        60,
    )
    wait_for(lambda: not _pods(api_client, namespace, "web"), "the pods to be gone", 60)


def test_restricted_namespace_refuses_a_privileged_pod(api_client: Any, namespace: str) -> None:
    label_restricted(api_client, namespace)
    spec = restricted_pod_spec()
    spec["containers"][0]["securityContext"] = {"privileged": True}
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"}, "spec": spec}
    with pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(api_client).create_namespaced_pod(namespace, body)
    assert caught.value.status == 403
    message = json.loads(caught.value.body)["message"]
    assert 'violates PodSecurity "restricted:' in message
    assert "privileged" in message


def test_kubectl_lists_ready_nodes(cluster: Any, cluster_mode: str) -> None:
    listed = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    ready = {
        n["metadata"]["name"]: n["metadata"].get("labels", {})
        for n in listed
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }
    assert ready
    table = cluster.kubectl("get", "nodes").stdout
    for name in ready:
        assert name in table
    if cluster_mode == "local":
        assert {"kwok-node-0", "kwok-node-1"} <= set(ready)
        assert all(ready[n]["type"] == "kwok" for n in ("kwok-node-0", "kwok-node-1"))


# --------------------------------------------------------------------------- the launcher


def test_kube_apiserver_reports_the_pinned_version(testenv_binaries: Binaries) -> None:
    versions_env = find_versions_env(REPO)
    assert versions_env is not None
    expected = parse_versions_env(versions_env.read_text())["KUBERNETES_VERSION"]
    out = subprocess.run(
        [str(testenv_binaries.kube_apiserver), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert out.strip() == f"Kubernetes {expected}"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """Read the child's stdout until ``marker`` appears (or fail), without buffering."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while marker.encode() not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                pytest.fail(
                    f"cluster CLI did not print {marker!r}; output so far:\n"
                    f"{seen.decode(errors='replace')}"
                )
            if selector.select(min(remaining, 1.0)):
                seen += os.read(fd, 65536)
    return seen.decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_cli_cluster_leaves_no_orphans(
    testenv_binaries: Binaries, tmp_path: Path, signum: int
) -> None:
    env = {**os.environ, "PROMETHIOS_TESTENV_BIN": str(testenv_binaries.bin_dir)}
    proc = subprocess.Popen(
        # --workdir: a kill -9'd parent cannot remove its temp dir; let pytest do it.
        [
            sys.executable,
            "-m",
            "promethios_local.localcluster",
            "--nodes=1",
            f"--workdir={tmp_path / 'work'}",
            f"--kubeconfig-out={tmp_path / 'kubeconfig'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        output = _read_until(proc, "export KUBECONFIG=", timeout=90)
        assert f"export KUBECONFIG={tmp_path / 'kubeconfig'}" in output
        children = psutil.Process(proc.pid).children(recursive=True)
        names = sorted(Path(c.cmdline()[0]).name for c in children)
        assert names == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        ]
        proc.send_signal(signum)
        code = proc.wait(30)
        if signum == signal.SIGTERM:
            assert code == 0
        wait_for(lambda: not any(_alive(c) for c in children), "the components to exit", 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_failed_start_reports_the_log_and_stops_what_started(
    testenv_binaries: Binaries, tmp_path: Path
) -> None:
    broken = tmp_path / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E0101 simulated apiserver failure' >&2\nexit 3\n")
    broken.chmod(0o755)
    binaries = dataclasses.replace(testenv_binaries, kube_apiserver=broken)
    cluster = LocalCluster(binaries=binaries, nodes=0, startup_timeout=30)
    with pytest.raises(ComponentError) as caught:
        cluster.start()
    try:
        assert caught.value.component == "kube-apiserver"
        assert "exited with code 3" in str(caught.value)
        assert "simulated apiserver failure" in str(caught.value)
        # The logs outlive the failed start; the rest of the temp workdir does not.
        assert "simulated apiserver failure" in caught.value.log_path.read_text()
        assert sorted(p.name for p in cluster.workdir.iterdir()) == ["logs"]
        # etcd had started; it must be gone too.
        leftovers = [
            p
            for p in psutil.process_iter()
            if _alive(p) and any(str(cluster.workdir) in a for a in _cmdline(p))
        ]
        assert leftovers == []
    finally:
        shutil.rmtree(cluster.workdir, ignore_errors=True)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return list(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []
