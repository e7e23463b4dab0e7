"""Unit tests for the real node's pure parts: configuration builders, the packet-filter
clean-up plan, the sandbox image archive, cgroup mount discovery and the host lock."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import tomllib
import uuid
from pathlib import Path

import pytest

from promethios_local.localcluster.commands import apiserver_command
from promethios_local.localcluster.layout import LOOPBACK, Layout, Ports
from promethios_local.localcluster.realnode import configs, hostlock, steering_annotations
from promethios_local.localcluster.realnode.cgroups import hierarchies
from promethios_local.localcluster.realnode.hostnet import guard_rules
from promethios_local.localcluster.realnode.images import sandbox_archive
from promethios_local.localcluster.realnode.netfilter import cleanup_commands, parse_save
from promethios_local.localcluster.realnode.node import RealNode
from promethios_local.localcluster.realnode.rbac import addon_rbac, node_identities
from promethios_local.localcluster.realnode.settings import (
    BRIDGE,
    HOST_ADDRESS,
    NODE_NAME,
    RUN_DIR,
    NodePaths,
    NodePorts,
)

PATHS = NodePaths(Path("/tmp/cluster/node"))
PORTS = NodePorts(kubelet=10250, kubelet_healthz=10248, proxy_healthz=10256,
                  proxy_metrics=10249, dns_ready=8181)  # fmt: skip


def test_containerd_keeps_everything_of_its_own_and_never_pulls() -> None:
    config = tomllib.loads(configs.containerd_config(PATHS))
    assert config["root"] == "/tmp/cluster/node/containerd"
    assert config["state"] == str(RUN_DIR / "containerd")
    assert config["grpc"]["address"] == str(RUN_DIR / "containerd.sock")
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # root here lacks CAP_SYS_RESOURCE
    assert cri["netns_mounts_under_state_dir"] is True  # not /run/netns
    assert cri["sandbox_image"].startswith("localhost/")
    assert cri["cni"]["conf_dir"] == str(PATHS.cni_conf_dir)
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False and runc["Root"] == str(RUN_DIR / "runc")
    assert config["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(str(PATHS.root))


def test_pods_get_no_default_route_no_masquerade_and_no_forwarding() -> None:
    bridge = configs.cni_config(PATHS)["plugins"][0]
    assert bridge["bridge"] == BRIDGE
    assert bridge["isGateway"] is False and bridge["isDefaultGateway"] is False
    assert bridge["ipMasq"] is False
    routes = bridge["ipam"]["routes"]
    assert routes == [{"dst": "10.96.0.0/16", "gw": HOST_ADDRESS}]  # Services only
    assert not any(r["dst"] in ("0.0.0.0/0", "default") for r in routes)
    assert not bridge["ipam"]["ranges"][0][0]["subnet"].startswith("10.244.")  # kwok's
    assert bridge["ipam"]["dataDir"].startswith(str(PATHS.root))


def test_kubelet_is_locked_down_tainted_and_confined_to_its_cgroup_parent() -> None:
    config = configs.kubelet_config(PATHS, PORTS, Path("/pki/ca.crt"))
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authentication"]["webhook"]["enabled"] is True
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0 and config["healthzBindAddress"] == LOOPBACK
    assert config["cgroupRoot"] == "/promethios-realnode" and config["cgroupDriver"] == "cgroupfs"
    assert config["makeIPTablesUtilChains"] is False
    assert config["resolvConf"] == str(PATHS.resolv_conf)  # empty: no host resolvers
    assert config["clusterDNS"] == [HOST_ADDRESS]
    assert config["registerWithTaints"] == [
        {"key": "promethios.ai/real-node", "effect": "NoSchedule"}
    ]
    argv = configs.kubelet_command(Path("/bin/kubelet"), PATHS, Path("/k.conf"))
    assert f"--node-ip={HOST_ADDRESS}" in argv and f"--hostname-override={NODE_NAME}" in argv
    assert "--node-labels=promethios.ai/real-node=true" in argv


def test_kube_proxy_leaves_sysctls_alone_and_masquerades_nothing_extra() -> None:
    config = configs.kube_proxy_config(PORTS, Path("/k.conf"))
    assert config["mode"] == "iptables"
    assert set(config["conntrack"].values()) <= {0, "0s"}  # sysctls untouched
    assert config["iptables"]["localhostNodePorts"] is False  # no route_localnet
    assert config["iptables"]["masqueradeAll"] is False and "clusterCIDR" not in config
    assert config["nodePortAddresses"] == [f"{HOST_ADDRESS}/32"]
    assert config["healthzBindAddress"].startswith(f"{LOOPBACK}:")


def test_cluster_dns_listens_on_the_bridge_and_forwards_nowhere() -> None:
    corefile = configs.corefile(Path("/dns.kubeconfig"), 8181)
    assert f"bind {HOST_ADDRESS}" in corefile
    assert "ready 127.0.0.1:8181" in corefile
    assert "forward" not in corefile and "proxy" not in corefile
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in corefile


def test_kube_router_runs_only_its_network_policy_controller() -> None:
    argv = configs.kube_router_command(Path("/bin/kube-router"), Path("/kr.conf"))
    assert "--run-firewall=true" in argv
    for off in ("--run-router=false", "--run-service-proxy=false", "--enable-cni=false",
                "--health-port=0", "--metrics-port=0", "--enable-pod-egress=false"):  # fmt: skip
        assert off in argv


def test_apiserver_with_a_real_node_binds_the_bridge_and_publishes_its_endpoint() -> None:
    layout = Layout(Path("/tmp/cluster"))
    ports = Ports(etcd_client=1, etcd_peer=2, apiserver=3, host=HOST_ADDRESS)
    argv = apiserver_command(Path("/kube-apiserver"), layout, ports,
                             extra_args=RealNode.apiserver_args(layout.pki))  # fmt: skip
    flags = dict(arg.partition("=")[::2] for arg in argv[1:])
    assert flags["--bind-address"] == flags["--advertise-address"] == HOST_ADDRESS
    assert "--endpoint-reconciler-type" not in flags  # the kubernetes Service gets endpoints
    assert flags["--etcd-servers"] == "http://127.0.0.1:1"  # etcd stays on loopback
    assert flags["--enable-admission-plugins"] == "PodNodeSelector,PodTolerationRestriction"
    assert flags["--kubelet-client-certificate"].endswith("apiserver-kubelet-client.crt")
    assert flags["--kubelet-preferred-address-types"] == "InternalIP"


def test_steering_annotations_select_the_node_and_tolerate_its_taint() -> None:
    annotations = steering_annotations()
    assert annotations["scheduler.alpha.kubernetes.io/node-selector"] == (
        "promethios.ai/real-node=true"
    )
    tolerations = json.loads(annotations["scheduler.alpha.kubernetes.io/defaultTolerations"])
    assert tolerations == [
        {"key": "promethios.ai/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_node_identities_and_addon_rbac_are_least_privilege() -> None:
    identities = node_identities(NODE_NAME)
    assert identities["kubelet"].user == f"system:node:{NODE_NAME}"
    assert identities["kubelet"].groups == ("system:nodes",)
    assert identities["kube-proxy"].user == "system:kube-proxy"  # bootstrap-bound
    roles = [o for o in addon_rbac() if o["kind"] == "ClusterRole"]
    verbs = {v for role in roles for rule in role["rules"] for v in rule["verbs"]}
    assert verbs <= {"get", "list", "watch", "create", "patch"}
    assert all("*" not in rule["resources"] for role in roles for rule in role["rules"])


BEFORE = """\
*filter
:INPUT ACCEPT [10:20]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
COMMIT
"""
AFTER = """\
*filter
:INPUT ACCEPT [99:999]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-FIREWALL - [0:0]
:SOMEONE-ELSE - [0:0]
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kube-router netpol" -j KUBE-ROUTER-FORWARD
-A FORWARD -j DOCKER-USER
-A FORWARD -i promethios0 -o promethios0 -j ACCEPT
-A FORWARD -j SOMEONE-ELSE
-A KUBE-ROUTER-FORWARD -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
"""


def test_cleanup_removes_only_what_the_node_added() -> None:
    commands = cleanup_commands(parse_save(BEFORE), parse_save(AFTER))
    assert ["-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"] in commands
    assert ["-t", "filter", "-D", "FORWARD", "-m", "comment", "--comment",
            "kube-router netpol", "-j", "KUBE-ROUTER-FORWARD"] in commands  # fmt: skip
    assert ["-t", "filter", "-D", "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"] in commands
    assert ["-t", "nat", "-X", "KUBE-SERVICES"] in commands
    assert ["-t", "filter", "-P", "FORWARD", "ACCEPT"] in commands  # policy restored
    flat = [" ".join(c) for c in commands]
    assert not any("SOMEONE-ELSE" in c or "DOCKER-USER" in c for c in flat)  # not ours
    # Rules go before the chains they jump to are flushed and deleted.
    delete_rule = flat.index("-t filter -D INPUT -j KUBE-FIREWALL")
    assert delete_rule < flat.index("-t filter -X KUBE-FIREWALL")
    assert flat.index("-t filter -F KUBE-ROUTER-FORWARD") < flat.index(
        "-t filter -X KUBE-ROUTER-FORWARD"
    )


def test_cleanup_of_an_unchanged_host_does_nothing() -> None:
    assert cleanup_commands(parse_save(AFTER), parse_save(AFTER)) == []


def test_guard_rules_drop_forwarding_between_the_bridge_and_anything_else() -> None:
    rules = [" ".join(r) for r in guard_rules()]
    assert f"-t mangle -A PROMETHIOS-GUARD -i {BRIDGE} ! -o {BRIDGE} -j DROP" in rules
    assert f"-t mangle -A PROMETHIOS-GUARD ! -i {BRIDGE} -o {BRIDGE} -j DROP" in rules
    assert "-t mangle -I FORWARD 1 -j PROMETHIOS-GUARD" in rules
    assert f"-t filter -A PROMETHIOS-FORWARD -i {BRIDGE} -o {BRIDGE} -j ACCEPT" in rules


def test_sandbox_archive_is_a_one_layer_docker_archive(tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF static busybox stand-in")
    data = sandbox_archive(busybox, "localhost/pause:test")
    assert data == sandbox_archive(busybox, "localhost/pause:test")  # reproducible
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        (manifest,) = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest["RepoTags"] == ["localhost/pause:test"]
        config = json.loads(archive.extractfile(manifest["Config"]).read())  # type: ignore[union-attr]
        layer = archive.extractfile(manifest["Layers"][0]).read()  # type: ignore[union-attr]
    assert config["config"]["Entrypoint"][:2] == ["/bin/busybox", "sleep"]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as files:
        member = files.getmember("bin/busybox")
        assert member.mode == 0o755 and files.extractfile(member).read() == busybox.read_bytes()  # type: ignore[union-attr]


def test_cgroup_hierarchies_are_read_from_mountinfo() -> None:
    mountinfo = (
        "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "40 1 8:1 / / rw,relatime - ext4 /dev/vda rw\n"
    )
    assert hierarchies(mountinfo) == [
        Path("/sys/fs/cgroup/cpu,cpuacct"),
        Path("/sys/fs/cgroup/memory"),
        Path("/sys/fs/cgroup/unified"),
    ]


def test_host_lock_is_reentrant_and_excludes_other_holders() -> None:
    name = f"promethios-test-lock-{uuid.uuid4().hex}"  # not the real one: it may be busy
    lock = hostlock.AbstractSocketLock(name)
    address = b"\0" + name.encode()
    lock.acquire(timeout=5)
    lock.acquire(timeout=5)
    lock.release()
    assert lock.held()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(OSError):
        other.bind(address)  # what another process would try
    other.close()
    with pytest.raises(hostlock.HostBusyError, match=name):
        hostlock.AbstractSocketLock(name).acquire(timeout=0.2)
    lock.release()
    assert not lock.held()
    free = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    free.bind(address)  # released: bindable again
    free.close()
