"""Everything a real node adds to the machine is gone after it stops: on a normal stop,
after its components crashed, after a failed start, and after Ctrl-C on
``promethios cluster --real-node``.

Each test compares :class:`HostSnapshot` taken before the node started and after it
stopped (links, routes, iptables/ip6tables, ipsets, nft, mounts, node processes, cgroup
directories, fixed host paths, sysctls), holding the real-node host lock (and the image
build lock) so that no other node or image build changes the machine meanwhile. Every
test also checks that the node did leave traces while it ran, so an empty comparison is
not an accident. They start nodes of their own, so conftest runs them first.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import OPERATOR_IMAGE, image_archives, restricted_container, wait_for

from promethios_local.localcluster import LocalCluster, LocalClusterError
from promethios_local.localcluster.realnode import default_archive_dir, host_lock, toleration
from promethios_local.localcluster.realnode.hoststate import HostSnapshot
from promethios_local.localcluster.realnode.sweep import sweep_leftovers

#: Each test starts a node of its own (and the Ctrl-C one a whole CLI process).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def quiet_host() -> Iterator[None]:
    """Hold the real-node lock and the image-build lock for the whole test.

    A node killed outright before this run (a CI job cut short, an interrupted session)
    left its traces and its baseline behind; they are swept first, so that the
    "before" snapshot is the machine without any node and each test judges only what
    its own node added.
    """
    lock_file = default_archive_dir().parent / ".lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle, host_lock():
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert sweep_leftovers() == [], "an earlier node's leftovers could not be removed"
        yield


def sleeper_pod(name: str = "sleeper") -> dict[str, Any]:
    """A pod on the real node: a sandbox, a container, a netns, mounts and cgroups."""
    container = restricted_container("app", ["python", "-m", "http.server", "8080"], 8080)
    container["image"] = OPERATOR_IMAGE  # the one archive these tests import
    del container["readinessProbe"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"tolerations": [toleration()], "nodeSelector": {"promethios.ai/real-node": "true"},
                 "containers": [container]},
    }  # fmt: skip


def operator_archive() -> list[Path]:
    """Only the project's image: enough for a pod, and the quickest node start."""
    return [a for a in image_archives() if a.name == "promethios-operator.tar"]


def assert_same_host(before: HostSnapshot, after: HostSnapshot) -> None:
    differences = before.differences(after)
    assert not differences, json.dumps(differences, indent=2)[:6000]


def run_pod(cluster: LocalCluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(sleeper_pod()))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s")


def test_a_stopped_node_leaves_the_machine_as_it_was(quiet_host: None) -> None:
    before = HostSnapshot.capture()
    with LocalCluster(nodes=0, real_nodes=1, image_archives=operator_archive()) as cluster:
        run_pod(cluster)
        during = HostSnapshot.capture()
        assert during.node_traces(), "the running node left no trace to look for"
        assert before.differences(during)  # it did change the machine while it ran
    assert cluster.cleanup_failures == []
    assert_same_host(before, HostSnapshot.capture())


def test_a_node_whose_components_crashed_is_swept_on_stop(quiet_host: None) -> None:
    before = HostSnapshot.capture()
    cluster = LocalCluster(nodes=0, real_nodes=1, image_archives=operator_archive())
    try:
        cluster.start()
        run_pod(cluster)
        # containerd and the kubelet die: the shim and the container keep running.
        pids = cluster.pids()
        for component in ("kubelet", "containerd"):
            os.kill(pids[component], signal.SIGKILL)
        wait_for(lambda: not _alive(pids["containerd"]), "containerd to die", timeout=10)
        assert any("containerd-shim" in p for p in HostSnapshot.capture().processes)
    finally:
        cluster.stop()
    assert cluster.cleanup_failures == []
    assert_same_host(before, HostSnapshot.capture())


def test_a_failed_start_leaves_nothing(quiet_host: None, tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not an image archive")
    before = HostSnapshot.capture()
    with pytest.raises(LocalClusterError, match=r"broken\.tar"):
        LocalCluster(nodes=0, real_nodes=1, image_archives=[broken]).start()
    assert_same_host(before, HostSnapshot.capture())


def test_ctrl_c_on_promethios_cluster_leaves_nothing(tmp_path: Path) -> None:
    archives = operator_archive()
    with host_lock():
        before = HostSnapshot.capture()
    # The CLI takes the host lock itself, so this process must not hold it meanwhile.
    argv = [sys.executable, "-m", "promethios_local.localcluster", "--nodes", "0", "--real-node",
            "--kubeconfig-out", str(tmp_path / "kubeconfig"),
            *[f"--image-archive={a}" for a in archives]]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        while not any(line.startswith("export KUBECONFIG=") for line in output):
            line = process.stdout.readline()
            assert line or process.poll() is None, "".join(output)
            output.append(line)
            assert time.monotonic() < deadline, "".join(output)
        kubectl = [str(_kubectl()), f"--kubeconfig={tmp_path / 'kubeconfig'}"]
        subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(sleeper_pod()),
                       text=True, check=True, capture_output=True)  # fmt: skip
        subprocess.run([*kubectl, "wait", "--for=condition=Ready", "pod/sleeper",
                        "--timeout=90s"], check=True, capture_output=True)  # fmt: skip
        assert HostSnapshot.capture().node_traces()
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
        output.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(output)
    with host_lock():
        assert_same_host(before, HostSnapshot.capture())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return ""


def _kubectl() -> Path:
    from promethios_local.localcluster import find_binaries

    return find_binaries().kubectl
