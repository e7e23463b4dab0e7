"""The ``kind`` Docker network, made by the session before kind would make its own.

kind creates its network with masquerading on; when a network named ``kind`` exists it
uses that instead. This one is a bridge with a fixed name and subnet (:mod:`.settings`),
no masquerade and no inter-container isolation rules (the daemon writes no iptables at
all). Node containers get a default route to the bridge's address on this machine; a
guard chain in the host's ``mangle FORWARD`` drops whatever would be forwarded from the
bridge to another interface (or to it from another), so nothing leaves the machine even
where IP forwarding is on. The guard is removed again with the real node's clean-up
(:func:`~promethios_local.localcluster.realnode.netfilter.remove_added`), which removes
``PROMETHIOS-*`` chains and the jumps to them added since a recorded baseline.
"""

from __future__ import annotations

import subprocess

from ..localcluster.realnode.hostnet import bridge_guard
from .dockerd import DockerDaemon, DockerError
from .settings import BRIDGE, GATEWAY, GUARD_CHAIN, KIND_NETWORK, SUBNET


def create_network(daemon: DockerDaemon) -> None:
    """(Re)create the ``kind`` network; one left by a killed session is replaced."""
    if daemon.docker("network", "inspect", KIND_NETWORK, check=False).returncode == 0:
        daemon.docker("network", "rm", KIND_NETWORK)
    daemon.docker(
        "network", "create", "--driver=bridge", f"--subnet={SUBNET}", f"--gateway={GATEWAY}",
        "--opt", f"com.docker.network.bridge.name={BRIDGE}",
        "--opt", "com.docker.network.bridge.enable_ip_masquerade=false",
        "--opt", "com.docker.network.bridge.enable_icc=true",
        KIND_NETWORK,
    )  # fmt: skip


def remove_network(daemon: DockerDaemon) -> list[str]:
    result = daemon.docker("network", "rm", KIND_NETWORK, check=False)
    if result.returncode != 0 and "not found" not in result.stderr:
        return [f"docker network rm {KIND_NETWORK}: {result.stderr.strip()}"]
    return []


def guard_rules() -> list[list[str]]:
    """``iptables`` arguments that install the guard (see the module docstring)."""
    return bridge_guard(BRIDGE, GUARD_CHAIN)


def install_guard() -> None:
    for args in guard_rules():
        result = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True,
                                timeout=30, check=False)  # fmt: skip
        if result.returncode != 0:
            raise DockerError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
