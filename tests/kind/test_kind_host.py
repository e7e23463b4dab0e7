"""A kind session leaves the machine as it found it, and its containers reach only this
machine (runs with ``--cluster=kind`` only: ``make test-kind``).

The test holds the real-node host lock and the image-build lock (so no real node or image
build changes the machine meanwhile), takes a :class:`HostSnapshot`, runs a
:class:`KindSession` with a one-node kind cluster on the node image ``make kind-image``
builds, and compares a second snapshot after the session ended. While the cluster runs
it checks that the session did change the machine (so an empty comparison is no accident),
that the node is Ready, that the node reaches a listener on this machine's bridge address
but neither an address beyond the machine nor a resolver outside it.
"""

from __future__ import annotations

import fcntl
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from promethios_local.kind import KindSession
from promethios_local.kind.settings import BRIDGE, CGROUP_PARENT, GATEWAY, GUARD_CHAIN, RUN_DIR
from promethios_local.localcluster.realnode import default_archive_dir, host_lock
from promethios_local.localcluster.realnode.hoststate import HostSnapshot

pytestmark = pytest.mark.timeout(900)
#: Beyond the machine: the default gateway of eth0 and the machine's upstream resolver.
OUTSIDE = ("192.0.2.1", "10.255.255.53")
#: Where hack/image/lib.sh keeps buildah's storage, under any cache directory.
OTHER_BUILDS = "/promethios/images/storage/"


@pytest.fixture
def quiet_host() -> Iterator[None]:
    lock_file = default_archive_dir().parent / ".lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle, host_lock():
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _our_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(RUN_DIR) in command:
            found.append(f"{entry.name} {command[:160]}")
    return found


def _listen_once(host: str) -> tuple[int, threading.Event]:
    """A TCP listener on ``host`` that records one accepted connection."""
    server = socket.create_server((host, 0))
    accepted = threading.Event()

    def serve() -> None:
        server.settimeout(60)
        try:
            connection, _ = server.accept()
            connection.close()
            accepted.set()
        except OSError:
            pass
        finally:
            server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], accepted


def _without_other_image_builds(differences: dict[str, dict[str, object]]) -> dict[str, object]:
    """Drop buildah overlay mounts of image builds whose cache is elsewhere (another
    checkout with its own XDG_CACHE_HOME builds under its own image-build lock, which
    this test cannot hold); the session never mounts under a buildah storage."""
    mounts = differences.get("mounts")
    if mounts is None:
        return dict(differences)
    ours = str(default_archive_dir().parent / "storage")
    kept = {
        change: [m for m in list(points) if OTHER_BUILDS not in m or m.startswith(ours)]
        for change, points in mounts.items()
        if isinstance(points, list)
    }
    rest: dict[str, object] = {k: v for k, v in differences.items() if k != "mounts"}
    return {**rest, "mounts": kept} if any(kept.values()) else rest


def _on_node(session: KindSession, node: str, script: str) -> subprocess.CompletedProcess[str]:
    return session.daemon.docker("exec", node, "bash", "-c", script, check=False, timeout=60)


def _node_ready(session: KindSession, node: str) -> bool:
    jsonpath = '{.status.conditions[?(@.type=="Ready")].status}'
    result = _on_node(session, node, f"kubectl get node {node} -o jsonpath='{jsonpath}'")
    return result.stdout.strip() == "True"


def test_kind_session_restores_the_machine(quiet_host: None, tmp_path: Path) -> None:
    before = HostSnapshot.capture()
    with KindSession() as session:
        name = f"host-{uuid.uuid4().hex[:6]}"
        node = f"{name}-control-plane"
        began = time.monotonic()
        session.kind_command("create", "cluster", "--name", name, "--image", session.image,
                             "--kubeconfig", str(tmp_path / "kubeconfig"))  # fmt: skip
        print(f"\nkind create cluster: {time.monotonic() - began:.1f} s")
        deadline = time.monotonic() + 120
        while not _node_ready(session, node):
            assert time.monotonic() < deadline, "the kind node did not become Ready in 120 s"
            time.sleep(1)
        print(f"node Ready after {time.monotonic() - began:.1f} s")

        during = HostSnapshot.capture()
        assert any(link.startswith(f"{BRIDGE} bridge") for link in during.links), during.links
        assert GUARD_CHAIN in during.iptables
        assert any(c.endswith(CGROUP_PARENT) for c in during.cgroups), during.cgroups
        assert _our_processes(), "no process of the session's dockerd was found"

        port, accepted = _listen_once(GATEWAY)
        reach_host = _on_node(session, node, f"timeout 10 bash -c '</dev/tcp/{GATEWAY}/{port}'")
        assert reach_host.returncode == 0, reach_host.stderr
        assert accepted.wait(10), "the listener on this machine saw no connection"
        for address in OUTSIDE:
            beyond = _on_node(session, node, f"timeout 5 bash -c '</dev/tcp/{address}/53'")
            assert beyond.returncode == 124, (address, beyond.returncode, beyond.stderr)
        lookup = _on_node(session, node, "timeout 10 getent hosts deb.debian.org")
        assert lookup.returncode != 0 and not lookup.stdout.strip(), lookup.stdout

    after = HostSnapshot.capture()
    differences = _without_other_image_builds(before.differences(after))
    assert not differences, json.dumps(differences, indent=2)[:6000]
    assert _our_processes() == []


KILLED_SESSION = """
import sys, time
from promethios_local.kind import KindSession
with KindSession(take_host_lock=False) as session:
    session.kind_command("create", "cluster", "--name", sys.argv[1], "--image", session.image,
                         "--kubeconfig", sys.argv[2])
    print("up", flush=True)
    time.sleep(900)
"""


def test_a_killed_session_is_swept_by_the_next(quiet_host: None, tmp_path: Path) -> None:
    """SIGKILL a session with a running cluster: its dockerd dies with it, the node
    container, shims, mounts, cgroups, bridge and guard stay; the next session removes them."""
    before = HostSnapshot.capture()
    name = f"killed-{uuid.uuid4().hex[:6]}"
    child = subprocess.Popen([sys.executable, "-c", KILLED_SESSION, name, str(tmp_path / "kc")],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "up", "the child session did not start"
    finally:
        child.kill()
        child.wait(30)
    left = HostSnapshot.capture()
    assert any(link.startswith(f"{BRIDGE} bridge") for link in left.links), left.links
    assert GUARD_CHAIN in left.iptables
    assert any(c.endswith(CGROUP_PARENT) for c in left.cgroups), left.cgroups
    with KindSession() as session:
        clusters = session.kind_command("get", "clusters").stdout.split()
        assert name not in clusters, "the killed session's cluster was not deleted"
    after = HostSnapshot.capture()
    differences = _without_other_image_builds(before.differences(after))
    assert not differences, json.dumps(differences, indent=2)[:6000]
    assert _our_processes() == []
