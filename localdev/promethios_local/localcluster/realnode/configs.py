"""Pure builders of the real node's configuration files and command lines.

containerd (config version 2), the CNI network, the kubelet's KubeletConfiguration, the
KubeProxyConfiguration, CoreDNS' Corefile and kube-router's flags. Each setting that
departs from a default says why; most are about running beside the host's own processes
without touching them (own sockets, roots, cgroup parent) or about leaving the machine
alone (no masquerade, no sysctl changes, no upstream DNS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..layout import SERVICE_CLUSTER_IP_RANGE
from .settings import (
    BRIDGE,
    CGROUP_PARENT,
    CLUSTER_DOMAIN,
    CNI_NETWORK,
    HOST_ADDRESS,
    NODE_LABEL,
    NODE_LABEL_VALUE,
    NODE_NAME,
    NODE_SUBNET,
    POD_RANGE_END,
    POD_RANGE_START,
    SANDBOX_IMAGE,
    TAINT_KEY,
    NodePaths,
    NodePorts,
)

Manifest = dict[str, Any]


def _toml_string(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def containerd_config(paths: NodePaths) -> str:
    """containerd's config.toml: its own root, state, socket, runc root and CNI directory.

    - ``restrict_oom_score_adj``: root here lacks CAP_SYS_RESOURCE, so runc may only raise
      oom_score_adj (without it: ``failed to update /proc/self/oom_score_adj``);
    - ``netns_mounts_under_state_dir``: pod network namespaces are mounted under the state
      directory instead of /run/netns;
    - the runc shim's ``Root`` keeps runc's state out of /run/containerd/runc;
    - nothing is ever pulled: the sandbox image is imported at start.
    """
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]'
    return "\n".join(
        [
            "version = 2",
            f"root = {_toml_string(paths.containerd_root)}",
            f"state = {_toml_string(paths.containerd_state)}",
            "disabled_plugins = ["
            '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
            '"io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", '
            '"io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
            "[grpc]",
            f"  address = {_toml_string(paths.containerd_socket)}",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml_string(paths.containerd_root / 'opt')}",
            cri,
            f"  sandbox_image = {_toml_string(SANDBOX_IMAGE)}",
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            "  enable_selinux = false",
            f"{cri[:-1]}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            runc,
            '  runtime_type = "io.containerd.runc.v2"',
            f"{runc[:-1]}.options]",
            "  SystemdCgroup = false",
            f"  Root = {_toml_string(paths.runc_root)}",
            f"{cri[:-1]}.cni]",
            '  bin_dir = "/usr/lib/cni"',
            f"  conf_dir = {_toml_string(paths.cni_conf_dir)}",
            "  max_conf_num = 1",
            "",
        ]
    )


def cni_config(paths: NodePaths) -> Manifest:
    """The pod network: the bridge plugin on our pre-made bridge, host-local addresses.

    ``isGateway: false`` and ``ipMasq: false``: the plugin neither turns on forwarding nor
    adds a masquerade rule, and pods get no default route. Their only routes are the node
    subnet (on-link) and the Service range via the host's bridge address.
    """
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": False,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_ipam_dir),
                    "ranges": [
                        [
                            {
                                "subnet": str(NODE_SUBNET),
                                "rangeStart": POD_RANGE_START,
                                "rangeEnd": POD_RANGE_END,
                                "gateway": HOST_ADDRESS,
                            }
                        ]
                    ],
                    "routes": [{"dst": SERVICE_CLUSTER_IP_RANGE, "gw": HOST_ADDRESS}],
                },
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(paths: NodePaths, ports: NodePorts, ca_file: Path) -> Manifest:
    """KubeletConfiguration: webhook authn/authz against the cluster CA, cgroupfs driver
    under our own cgroup parent, the empty resolv.conf, the taint, and no iptables chains."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": HOST_ADDRESS,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_PARENT}",
        "failCgroupV1": False,  # this machine's controllers are on cgroup v1
        "failSwapOn": False,
        "staticPodPath": "",
        "resolvConf": str(paths.resolv_conf),
        "clusterDNS": [HOST_ADDRESS],
        "clusterDomain": CLUSTER_DOMAIN,
        "registerNode": True,
        "registerWithTaints": [{"key": TAINT_KEY, "effect": "NoSchedule"}],
        "makeIPTablesUtilChains": False,
        "evictionHard": {},
        "imageGCHighThresholdPercent": 100,  # never delete the imported images
        "imageGCLowThresholdPercent": 99,
        "podLogsDir": str(paths.pod_logs),
        "serializeImagePulls": False,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }


def kubelet_command(
    binary: Path, paths: NodePaths, kubeconfig: Path, verbosity: int = 1
) -> list[str]:
    """The kubelet's flags (the rest is in its configuration file)."""
    return [
        str(binary),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.kubelet_certs}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={HOST_ADDRESS}",
        f"--node-labels={NODE_LABEL}={NODE_LABEL_VALUE}",
        f"--v={verbosity}",
    ]


def kube_proxy_config(ports: NodePorts, kubeconfig: Path) -> Manifest:
    """KubeProxyConfiguration, iptables mode (this kernel has no IPVS).

    Conntrack sizes and timeouts of 0 leave the host's sysctls as they are; no localhost
    node ports (that would set route_localnet); node ports only on the node IP; no cluster
    CIDR, so nothing is masqueraded.
    """
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": HOST_ADDRESS,
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        "nodePortAddresses": [f"{HOST_ADDRESS}/32"],
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "syncPeriod": "30s"},
    }


def kube_proxy_command(binary: Path, config: Path) -> list[str]:
    return [str(binary), f"--config={config}", "--v=1"]


def corefile(kubeconfig: Path, ready_port: int) -> str:
    """Cluster DNS on the bridge address: cluster.local and reverse zones from the API,
    nothing forwarded (no ``forward`` plugin is even built in), readiness on loopback."""
    return (
        f".:53 {{\n"
        f"    bind {HOST_ADDRESS}\n"
        f"    ready 127.0.0.1:{ready_port}\n"
        f"    errors\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {kubeconfig}\n"
        f"        pods insecure\n"
        f"        ttl 5\n"
        f"    }}\n"
        f"    cache 5\n"
        f"    loadbalance\n"
        f"}}\n"
    )


def coredns_command(binary: Path, corefile_path: Path) -> list[str]:
    return [str(binary), "-conf", str(corefile_path)]


def kube_router_command(binary: Path, kubeconfig: Path) -> list[str]:
    """kube-router's NetworkPolicy controller only: no routing, no service proxy, no CNI,
    no health or metrics listener; iptables + ipset, which this kernel has built in."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={NODE_NAME}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--run-loadbalancer=false",
        "--enable-cni=false",
        "--enable-ipv4=true",
        "--enable-ipv6=false",
        "--enable-pod-egress=false",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--health-port=0",
        "--metrics-port=0",
        "--iptables-sync-period=30s",
        "--v=1",
    ]
