"""Where the real-pod tests run: the local cluster's real kubelet node, or a kind node.

The tests (not a test module, not a conftest; imported as ``e2e_platform``) need the same
few things from either, and :class:`Platform` is all of them: kubectl and a kubeconfig
(for helm), the name of the node their pods run on, how a namespace and the chart put pods
there, where the node's packet filter and connection tracking live, and where the node's
containers' memory cgroups are on this machine.

- ``local``: the session's :class:`LocalCluster` has kwok nodes beside the real one, so
  namespaces carry steering annotations and the chart gets the real node's toleration and
  nodeSelector; the node's network is this machine's.
- ``kind``: every pod runs on the kind node (one node), whose network is its container's
  namespace (entered with ``nsenter -t <its PID> -n``); pods reach the cluster, not this
  machine, so everything the tests talk to runs in pods.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from promethios_local.kind.settings import CGROUP_PARENT as KIND_CGROUP_PARENT
from promethios_local.localcluster.realnode import (
    NODE_LABEL,
    NODE_NAME,
    steering_annotations,
    toleration,
)
from promethios_local.localcluster.realnode.settings import CGROUP_PARENT

#: cgroup v1 memory hierarchy on this machine (the real node's notes: cgroup v1 only).
MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")


class Kubectl(Protocol):
    """What the platform needs of a cluster: both LocalCluster and the kind handle have it."""

    @property
    def kubeconfig(self) -> Path: ...

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]: ...


@dataclass
class Platform:
    """One cluster the real-pod tests run on; see the module docstring."""

    name: str
    cluster: Kubectl
    helm: Path
    node_name: str
    #: Namespace annotations that put every pod of a namespace on :attr:`node_name`.
    namespace_annotations: dict[str, str] = field(default_factory=dict)
    #: ``helm --set-json`` values that put the operator on :attr:`node_name`.
    chart_values: dict[str, Any] = field(default_factory=dict)
    #: The init PID of the node's network namespace; ``None``: this machine's own.
    netns_pid: int | None = None
    #: Where the node's containers' memory cgroups are, under :data:`MEMORY_CGROUPS`.
    cgroup_parent: str = CGROUP_PARENT
    #: Other names a loaded image carries on the node (kind: the cluster tests' placeholder
    #: names are tags of the project's images).
    image_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, check=check, input=input, timeout=timeout)

    def helm_set_json(self) -> list[str]:
        """``--set-json`` arguments for :attr:`chart_values`."""
        args: list[str] = []
        for key, value in self.chart_values.items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        return args

    def names_image(self, reported: str, image: str) -> bool:
        """Whether a container status's ``image`` is ``image``: the runtime reports one of
        the names the image carries, which on kind include :attr:`image_aliases`."""
        return any(reported.endswith(name) for name in (image, *self.image_aliases.get(image, ())))

    def in_node_netns(self, *argv: str) -> list[str]:
        """``argv`` run in the node's network namespace (the one its pods are routed in)."""
        if self.netns_pid is None:
            return list(argv)
        return ["nsenter", "-t", str(self.netns_pid), "-n", "--", *argv]

    def container_memory_cgroup(self, container_id: str) -> Path:
        """The memory cgroup directory of a container of the node, on this machine."""
        matches = list((MEMORY_CGROUPS / self.cgroup_parent).glob(f"**/{container_id}"))
        assert len(matches) == 1, (self.cgroup_parent, container_id, matches)
        return matches[0]


def local_platform(cluster: Kubectl, helm: Path) -> Platform:
    """The local cluster's real node (it shares the cluster with kwok nodes)."""
    return Platform(
        name="local",
        cluster=cluster,
        helm=helm,
        node_name=NODE_NAME,
        namespace_annotations=steering_annotations(),
        chart_values={"tolerations": [toleration()], "nodeSelector": {NODE_LABEL: "true"}},
    )


def kind_platform(
    cluster: Kubectl,
    helm: Path,
    node_pids: dict[str, int],
    image_aliases: dict[str, tuple[str, ...]],
) -> Platform:
    """The kind cluster's one node: every pod lands there, no steering needed."""
    if len(node_pids) != 1:
        raise AssertionError(f"the real-pod tests expect one kind node, found {node_pids}")
    ((node_name, pid),) = node_pids.items()
    return Platform(
        name="kind",
        cluster=cluster,
        helm=helm,
        node_name=node_name,
        netns_pid=pid,
        cgroup_parent=KIND_CGROUP_PARENT,
        image_aliases=image_aliases,
    )
