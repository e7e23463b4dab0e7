"""Pure builders of the control-plane command lines (``argv`` lists)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .layout import (
    LOOPBACK,
    POD_CIDR,
    SERVICE_ACCOUNT_ISSUER,
    SERVICE_CLUSTER_IP_RANGE,
    Layout,
    Ports,
)
from .manifests import KWOK_NODE_SELECTOR


def etcd_command(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    """A single-member etcd on loopback, without fsync (the data is throw-away)."""
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=default",
        f"--data-dir={layout.etcd_data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


AUDIT_POLICY_FILE = "audit-policy.yaml"
AUDIT_LOG_FILE = "audit.log"


def audit_policy_path(layout: Layout) -> Path:
    """The audit policy file (under logs/, which a reused workdir clears)."""
    return layout.log_dir / AUDIT_POLICY_FILE


def audit_log_path(layout: Layout) -> Path:
    """The API server's audit log: one JSON event per line."""
    return layout.log_dir / AUDIT_LOG_FILE


def apiserver_command(
    binary: Path,
    layout: Layout,
    ports: Ports,
    *,
    audit: bool = False,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """kube-apiserver with TLS, client-cert auth, Node+RBAC authz and SA token signing.

    The default admission plugins stay on (PodSecurity among them). Privileged pods
    are allowed cluster-wide, as on kind/kubeadm, so Pod Security admission is the one
    that refuses them in restricted namespaces. A loopback advertise address is refused
    by the endpoint reconciler, so it is off: the ``kubernetes`` Service gets no
    endpoints, which nothing here needs (kwok's pods run no code).

    With a real node the API server binds and advertises the node's bridge address
    (``ports.host``) instead: the endpoint reconciler then gives the ``kubernetes`` Service
    that endpoint, so pods reach the API server in-cluster.

    With ``audit`` every request is logged (policy :func:`~.manifests.audit_policy`) to
    :func:`audit_log_path`, unrotated, for counting requests per client.
    """
    endpoints = ["--endpoint-reconciler-type=none"] if ports.host == LOOPBACK else []
    argv = [
        str(binary),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={ports.host}",
        f"--advertise-address={ports.host}",
        *endpoints,
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={layout.pki('apiserver.crt')}",
        f"--tls-private-key-file={layout.pki('apiserver.key')}",
        f"--client-ca-file={layout.pki('ca.crt')}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-key-file={layout.pki('sa.pub')}",
        f"--service-account-signing-key-file={layout.pki('sa.key')}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--allow-privileged=true",
        "--profiling=false",
    ]
    if audit:
        argv += [
            f"--audit-policy-file={audit_policy_path(layout)}",
            f"--audit-log-path={audit_log_path(layout)}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",  # no rotation: one file to read
        ]
    return [*argv, *extra_args]


def controller_manager_command(binary: Path, layout: Layout, controllers: str = "*") -> list[str]:
    """kube-controller-manager with every default controller (or ``controllers``, its
    ``--controllers`` syntax: e.g. ``*,-deployment``), one SA per controller."""
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig('controller-manager')}",
        f"--bind-address={LOOPBACK}",
        "--secure-port=0",
        "--leader-elect=false",
        f"--controllers={controllers}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={layout.pki('sa.key')}",
        f"--root-ca-file={layout.pki('ca.crt')}",
        f"--cluster-signing-cert-file={layout.pki('ca.crt')}",
        f"--cluster-signing-key-file={layout.pki('ca.key')}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
    ]


def scheduler_command(binary: Path, layout: Layout) -> list[str]:
    """kube-scheduler on loopback, serving nothing (no port to collide on)."""
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig('scheduler')}",
        f"--bind-address={LOOPBACK}",
        "--secure-port=0",
        "--leader-elect=false",
    ]


def kwok_command(binary: Path, layout: Layout) -> list[str]:
    """kwok, managing only the nodes annotated ``kwok.x-k8s.io/node=fake``."""
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig('kwok')}",
        f"--config={layout.kwok_config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_SELECTOR}",
        f"--cidr={POD_CIDR}",
        "--node-lease-duration-seconds=40",  # renew kube-node-lease Leases, like a kubelet
    ]
