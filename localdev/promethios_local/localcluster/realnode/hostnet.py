"""The node's network on the host: its bridge, routes, forwarding and guard rules.

- The bridge ``promethios0`` holds the host address (node IP, API server, DNS); pods are
  attached to it by the CNI bridge plugin. A host route sends the Service range over the
  bridge with the bridge's source address, so host -> ClusterIP -> pod works.
- Forwarding is enabled for packets arriving on the bridge only
  (``net.ipv4.conf.promethios0.forwarding``; ``ip_forward`` stays as it is), which pod ->
  ClusterIP -> pod needs.
- Guard rules in the mangle table's FORWARD chain (which kube-proxy and kube-router never
  reorder) drop anything forwarded from the bridge to another interface or from another
  interface to the bridge; a filter FORWARD rule appended last accepts bridge -> bridge
  traffic that kube-router's policy chains (evaluated first) did not drop.
- ``net.bridge.bridge-nf-call-iptables`` must be 1 (bridged pod -> pod traffic then meets
  the policies and Service NAT); it is set if it was not, and restored on stop.

Deleting the bridge removes its address and routes; the rules go in :mod:`.netfilter`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import LocalClusterError
from ..layout import SERVICE_CLUSTER_IP_RANGE
from .settings import BRIDGE, HOST_ADDRESS, NODE_SUBNET

GUARD_CHAIN = "PROMETHIOS-GUARD"
ACCEPT_CHAIN = "PROMETHIOS-FORWARD"
BRIDGE_NF_CALL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


class HostNetworkError(LocalClusterError):
    """A host network command failed."""


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise HostNetworkError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout}")
    return result.stdout


def bridge_exists() -> bool:
    return Path(f"/sys/class/net/{BRIDGE}").exists()


def forwarding_sysctl() -> Path:
    return Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding")


def bridge_guard(bridge: str, chain: str) -> list[list[str]]:
    """``iptables`` arguments for a chain in ``mangle FORWARD`` that drops whatever would
    be forwarded between ``bridge`` and any other interface (also used by the kind
    network)."""
    return [
        ["-t", "mangle", "-N", chain],
        ["-t", "mangle", "-A", chain, "-i", bridge, "!", "-o", bridge, "-j", "DROP"],
        ["-t", "mangle", "-A", chain, "!", "-i", bridge, "-o", bridge, "-j", "DROP"],
        ["-t", "mangle", "-I", "FORWARD", "1", "-j", chain],
    ]


def guard_rules() -> list[list[str]]:
    """``iptables`` arguments that install the guard and accept rules (see module doc)."""
    return [
        *bridge_guard(BRIDGE, GUARD_CHAIN),
        ["-t", "filter", "-N", ACCEPT_CHAIN],
        ["-t", "filter", "-A", ACCEPT_CHAIN, "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"],
        ["-t", "filter", "-A", "FORWARD", "-j", ACCEPT_CHAIN],
    ]


def create_bridge() -> None:
    """Bridge, host address, Service route, guard rules, forwarding on the bridge only."""
    prefix = NODE_SUBNET.prefixlen
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{HOST_ADDRESS}/{prefix}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    _run("ip", "route", "add", SERVICE_CLUSTER_IP_RANGE, "dev", BRIDGE, "src", HOST_ADDRESS)
    for args in guard_rules():
        _run("iptables", "-w", *args)
    forwarding_sysctl().write_text("1\n")


def ensure_bridge_netfilter() -> str | None:
    """Set bridge-nf-call-iptables to 1; return the previous value if it was changed."""
    try:
        previous = BRIDGE_NF_CALL.read_text().strip()
    except OSError as error:
        raise HostNetworkError(
            f"{BRIDGE_NF_CALL} is not available ({error}): the kernel needs br_netfilter"
        ) from None
    if previous == "1":
        return None
    BRIDGE_NF_CALL.write_text("1\n")
    return previous


def restore_bridge_netfilter(previous: str | None) -> None:
    if previous is not None:
        BRIDGE_NF_CALL.write_text(f"{previous}\n")


def bridge_ports() -> list[str]:
    """Interfaces (pod veths) still attached to the bridge."""
    brif = Path(f"/sys/class/net/{BRIDGE}/brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def delete_bridge() -> list[str]:
    """Delete leftover veths on the bridge, then the bridge (its address and routes go
    with it). Returns failures, if any."""
    failures = []
    for port in bridge_ports():
        result = subprocess.run(["ip", "link", "del", port], capture_output=True, text=True)
        if result.returncode != 0 and Path(f"/sys/class/net/{port}").exists():
            failures.append(f"ip link del {port}: {result.stderr.strip()}")
    if bridge_exists():
        result = subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, text=True)
        if result.returncode != 0:
            failures.append(f"ip link del {BRIDGE}: {result.stderr.strip()}")
    return failures
