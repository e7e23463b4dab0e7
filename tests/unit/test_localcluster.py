"""Unit tests for the local control-plane launcher's pure helpers and process handling."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from promethios_local.localcluster import (
    BinariesNotFoundError,
    ComponentError,
    KubectlError,
    LocalClusterError,
    find_binaries,
    kubernetes_version,
)
from promethios_local.localcluster.binaries import (
    DEFAULT_KUBERNETES_VERSION,
    REQUIRED_COMPONENTS,
    default_bin_dir,
    find_versions_env,
    parse_versions_env,
)
from promethios_local.localcluster.cluster import describe_node, node_is_ready, node_is_usable
from promethios_local.localcluster.commands import (
    apiserver_command,
    audit_log_path,
    audit_policy_path,
    controller_manager_command,
    etcd_command,
    kwok_command,
    scheduler_command,
)
from promethios_local.localcluster.layout import Layout, Ports, allocate_ports, free_ports
from promethios_local.localcluster.manifests import (
    audit_policy,
    build_kubeconfig,
    kwok_configuration,
    node_manifest,
    render_yaml,
)
from promethios_local.localcluster.pki import ClientIdentity, generate_pki
from promethios_local.localcluster.process import ManagedProcess, tail
from promethios_local.localcluster.workdir import CLIENT_IDENTITIES, prepare_workdir

REPO = Path(__file__).resolve().parents[2]
LAYOUT = Layout(Path("/tmp/cluster"))
PORTS = Ports(etcd_client=23790, etcd_peer=23800, apiserver=26443)


def flags(argv: list[str]) -> dict[str, str]:
    """``--name=value`` arguments as a dict (flags without a value map to "")."""
    parsed = {}
    for arg in argv[1:]:
        name, _, value = arg.partition("=")
        parsed[name] = value
    return parsed


# --------------------------------------------------------------------------- commands


def test_etcd_listens_only_on_the_given_loopback_ports() -> None:
    argv = etcd_command(Path("/bin/etcd"), LAYOUT, PORTS)
    f = flags(argv)
    assert argv[0] == "/bin/etcd"
    assert f["--listen-client-urls"] == "http://127.0.0.1:23790"
    assert f["--listen-peer-urls"] == "http://127.0.0.1:23800"
    assert f["--initial-cluster"] == "default=http://127.0.0.1:23800"
    assert f["--data-dir"] == "/tmp/cluster/etcd-data"
    assert f["--unsafe-no-fsync"] == "true"


def test_apiserver_is_secured_like_a_real_cluster() -> None:
    f = flags(apiserver_command(Path("/bin/kube-apiserver"), LAYOUT, PORTS))
    assert f["--etcd-servers"] == "http://127.0.0.1:23790"
    assert f["--secure-port"] == "26443"
    assert f["--bind-address"] == f["--advertise-address"] == "127.0.0.1"
    assert f["--authorization-mode"] == "Node,RBAC"
    assert f["--client-ca-file"] == "/tmp/cluster/pki/ca.crt"
    assert f["--tls-cert-file"] == "/tmp/cluster/pki/apiserver.crt"
    assert f["--service-account-key-file"] == "/tmp/cluster/pki/sa.pub"
    assert f["--service-account-signing-key-file"] == "/tmp/cluster/pki/sa.key"
    assert f["--service-account-issuer"].startswith("https://")
    assert f["--service-cluster-ip-range"] == "10.96.0.0/16"
    # Admission stays at its defaults (PodSecurity included); no insecure serving.
    assert not any(
        name.startswith(
            ("--disable-admission", "--enable-admission", "--insecure", "--anonymous-auth")
        )
        for name in f
    )


def test_apiserver_audit_log_is_off_by_default_and_on_when_asked() -> None:
    plain = flags(apiserver_command(Path("/bin/kube-apiserver"), LAYOUT, PORTS))
    assert not any(name.startswith("--audit") for name in plain)
    f = flags(apiserver_command(Path("/bin/kube-apiserver"), LAYOUT, PORTS, audit=True))
    assert f["--audit-policy-file"] == str(audit_policy_path(LAYOUT))
    assert f["--audit-log-path"] == str(audit_log_path(LAYOUT)) == "/tmp/cluster/logs/audit.log"
    assert f["--audit-log-format"] == "json"
    assert f["--audit-log-maxsize"] == "0"  # never rotated away under a reader
    assert audit_policy_path(LAYOUT).parent == LAYOUT.log_dir  # cleared with a reused workdir
    policy = yaml.safe_load(render_yaml(audit_policy()))
    assert policy["apiVersion"] == "audit.k8s.io/v1"
    assert policy["kind"] == "Policy"
    assert policy["omitStages"] == ["RequestReceived"]
    assert policy["rules"] == [{"level": "Metadata"}]  # who, verb and object; never bodies


def test_controller_manager_and_scheduler_use_their_own_identities() -> None:
    cm = flags(controller_manager_command(Path("/bin/kcm"), LAYOUT))
    assert cm["--kubeconfig"] == "/tmp/cluster/controller-manager.kubeconfig"
    assert cm["--service-account-private-key-file"] == "/tmp/cluster/pki/sa.key"
    assert cm["--root-ca-file"] == "/tmp/cluster/pki/ca.crt"
    assert cm["--use-service-account-credentials"] == "true"
    assert cm["--controllers"] == "*"
    assert cm["--bind-address"] == "127.0.0.1"
    sched = flags(scheduler_command(Path("/bin/ks"), LAYOUT))
    assert sched["--kubeconfig"] == "/tmp/cluster/scheduler.kubeconfig"
    assert sched["--bind-address"] == "127.0.0.1"
    assert CLIENT_IDENTITIES["controller-manager"].user == "system:kube-controller-manager"
    assert CLIENT_IDENTITIES["scheduler"].user == "system:kube-scheduler"
    assert CLIENT_IDENTITIES["admin"].groups == ("system:masters",)


def test_kwok_manages_only_annotated_nodes_with_our_config() -> None:
    f = flags(kwok_command(Path("/bin/kwok"), LAYOUT))
    assert f["--manage-all-nodes"] == "false"
    assert f["--manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"
    assert f["--config"] == "/tmp/cluster/kwok.yaml"
    assert f["--kubeconfig"] == "/tmp/cluster/kwok.kubeconfig"
    assert f["--cidr"] == "10.244.0.0/16"
    assert f["--node-lease-duration-seconds"] == "40"


# --------------------------------------------------------------------------- manifests


def test_kubeconfig_embeds_server_ca_and_client_credentials() -> None:
    pki = generate_pki(["localhost"], ["127.0.0.1"], {"admin": ClientIdentity("me")})
    text = render_yaml(
        build_kubeconfig("https://127.0.0.1:6443", pki.ca.cert_pem, pki.clients["admin"], "me")
    )
    config = yaml.safe_load(text)
    assert config["current-context"] == config["contexts"][0]["name"]
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == pki.ca.cert_pem
    user = config["users"][0]
    assert user["name"] == "me" == config["contexts"][0]["context"]["user"]
    assert base64.b64decode(user["user"]["client-key-data"]) == pki.clients["admin"].key_pem


def test_fake_nodes_are_kwok_managed_schedulable_and_sized() -> None:
    node = node_manifest(1)
    assert node["metadata"]["name"] == "kwok-node-1"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["metadata"]["labels"]["type"] == "kwok"
    assert "taints" not in node["spec"]
    assert node["status"]["capacity"] == {"cpu": "32", "memory": "256Gi", "pods": "110"}


def test_kwok_configuration_has_the_lifecycle_stages() -> None:
    documents = kwok_configuration()
    stages = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "Stage"}
    assert set(stages) == {
        "node-initialize",
        "node-heartbeat",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    }
    assert stages["pod-delete"]["next"] == {"delete": True}
    assert stages["node-heartbeat"]["delay"]["durationMilliseconds"] > 0
    for spec in stages.values():
        assert spec["resourceRef"]["kind"] in {"Node", "Pod"}
        assert "\\\n" not in spec["next"].get("statusTemplate", "")
    # The whole file is valid multi-document YAML.
    assert len(list(yaml.safe_load_all(render_yaml(*documents)))) == len(documents)


@pytest.mark.parametrize(
    ("conditions", "taints", "usable"),
    [
        ([{"type": "Ready", "status": "True"}], [], True),
        ([{"type": "Ready", "status": "False"}], [], False),
        ([], [], False),
        (
            [{"type": "Ready", "status": "True"}],
            [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}],
            False,
        ),
        ([{"type": "Ready", "status": "True"}], [{"key": "x", "effect": "PreferNoSchedule"}], True),
    ],
)
def test_node_is_usable(
    conditions: list[dict[str, str]], taints: list[dict[str, str]], usable: bool
) -> None:
    node = {
        "metadata": {"name": "n"},
        "spec": {"taints": taints},
        "status": {"conditions": conditions},
    }
    assert node_is_usable(node) is usable
    assert node_is_ready(node) is (conditions == [{"type": "Ready", "status": "True"}])
    assert describe_node(node).startswith("n Ready=")


# --------------------------------------------------------------------------- PKI


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_serving_certificate_verifies_against_ca_with_loopback_san() -> None:
    pki = generate_pki(["localhost", "kubernetes.default.svc"], ["127.0.0.1", "10.96.0.1"], {})
    ca, serving = _load(pki.ca.cert_pem), _load(pki.serving.cert_pem)
    serving.verify_directly_issued_by(ca)  # raises if the signature or issuer is wrong
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in san.get_values_for_type(x509.DNSName)
    eku = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = dt.datetime.now(dt.UTC)
    assert serving.not_valid_before_utc <= now <= serving.not_valid_after_utc


def test_client_certificate_carries_user_and_groups() -> None:
    pki = generate_pki(
        [], ["127.0.0.1"], {"admin": ClientIdentity("kubernetes-admin", ("system:masters",))}
    )
    cert = _load(pki.clients["admin"].cert_pem)
    cert.verify_directly_issued_by(_load(pki.ca.cert_pem))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes-admin"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_service_account_keys_are_a_matching_pair() -> None:
    pki = generate_pki([], ["127.0.0.1"], {})
    private = serialization.load_pem_private_key(pki.service_account_key_pem, password=None)
    public = serialization.load_pem_public_key(pki.service_account_pub_pem)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert private.public_key().public_numbers() == public.public_numbers()


def test_mutual_tls_handshake_over_loopback(tmp_path: Path) -> None:
    """The generated files work for a real TLS client and server, as Go's would use them."""
    layout = Layout(tmp_path / "c")
    prepare_workdir(layout, PORTS)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(layout.pki("apiserver.crt"), layout.pki("apiserver.key"))
    server_ctx.load_verify_locations(layout.pki("ca.crt"))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(layout.pki("ca.crt")))
    client_ctx.load_cert_chain(layout.pki("admin.crt"), layout.pki("admin.key"))
    peer: dict[str, object] = {}

    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peer.update(tls.getpeercert() or {})
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(2) == b"ok"
        thread.join(5)
    subject = peer["subject"]
    assert isinstance(subject, tuple)
    assert (("commonName", "kubernetes-admin"),) in subject  # the server saw our client cert


def test_prepare_workdir_writes_private_files_privately(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "c")
    prepare_workdir(layout, PORTS)
    assert layout.pki("sa.key").stat().st_mode & 0o077 == 0
    assert layout.admin_kubeconfig.stat().st_mode & 0o077 == 0
    config = yaml.safe_load(layout.admin_kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:26443"
    for name in CLIENT_IDENTITIES:
        assert layout.kubeconfig(name).is_file()
    kinds = [d["kind"] for d in yaml.safe_load_all(layout.kwok_config.read_text())]
    assert kinds.count("Stage") == 5


def test_reused_workdir_is_emptied_but_foreign_files_are_refused(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "c")
    prepare_workdir(layout, PORTS)
    first_ca = layout.pki("ca.crt").read_bytes()
    (layout.etcd_data_dir / "member").mkdir()
    prepare_workdir(layout, PORTS)
    assert layout.pki("ca.crt").read_bytes() != first_ca  # a fresh PKI
    assert list(layout.etcd_data_dir.iterdir()) == []  # and a fresh etcd
    (layout.root / "notes.txt").write_text("mine")
    with pytest.raises(LocalClusterError, match=r"notes\.txt"):
        prepare_workdir(layout, PORTS)
    assert (layout.root / "notes.txt").read_text() == "mine"
    assert layout.pki("ca.crt").is_file()


# --------------------------------------------------------------------------- ports


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    allocated = allocate_ports()
    assert len({allocated.etcd_client, allocated.etcd_peer, allocated.apiserver}) == 3


# --------------------------------------------------------------------------- binaries


def _fake_bins(directory: Path, names: tuple[str, ...] = REQUIRED_COMPONENTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return directory


def test_find_binaries_uses_the_xdg_cache(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "HOME": "/nonexistent"}
    bin_dir = _fake_bins(default_bin_dir(env, "v9.9.9"))
    assert bin_dir == tmp_path / "promethios/testenv/v9.9.9/bin"
    found = find_binaries(env, version="v9.9.9")
    assert found.bin_dir == bin_dir
    assert found.kube_apiserver == bin_dir / "kube-apiserver"
    assert found.helm is None


def test_find_binaries_defaults_to_home_cache(tmp_path: Path) -> None:
    assert (
        default_bin_dir({"HOME": str(tmp_path)}, "v1")
        == tmp_path / ".cache/promethios/testenv/v1/bin"
    )


def test_env_override_and_symlink_names_are_kept(tmp_path: Path) -> None:
    bin_dir = _fake_bins(tmp_path / "bin", ("etcd", "kwok", "kube", "helm"))
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        (bin_dir / name).symlink_to("kube")
    found = find_binaries({"PROMETHIOS_TESTENV_BIN": str(bin_dir)})
    # The multi-call binary picks its component from argv[0]: the symlink must survive.
    assert found.kube_scheduler.name == "kube-scheduler"
    assert found.helm == bin_dir / "helm"


def test_kubebuilder_assets_take_precedence_for_envtest_components(tmp_path: Path) -> None:
    cache = _fake_bins(tmp_path / "cache")
    assets = _fake_bins(tmp_path / "assets", ("etcd", "kube-apiserver", "kubectl"))
    found = find_binaries({"PROMETHIOS_TESTENV_BIN": str(cache), "KUBEBUILDER_ASSETS": str(assets)})
    assert found.etcd == assets / "etcd"
    assert found.kube_apiserver == assets / "kube-apiserver"
    assert found.kubectl == assets / "kubectl"
    assert found.kwok == cache / "kwok"
    assert found.kube_scheduler == cache / "kube-scheduler"


def test_missing_binaries_tell_the_user_to_run_make_testenv(tmp_path: Path) -> None:
    cache = _fake_bins(tmp_path / "cache", ("etcd", "kubectl"))
    (cache / "kwok").write_text("not executable")
    with pytest.raises(BinariesNotFoundError) as caught:
        find_binaries({"PROMETHIOS_TESTENV_BIN": str(cache)})
    message = str(caught.value)
    assert "make testenv" in message
    assert set(caught.value.missing) == {
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    assert str(cache / "kwok") in message
    assert isinstance(caught.value, FileNotFoundError)


def test_kubebuilder_assets_missing_a_file_is_reported_there(tmp_path: Path) -> None:
    cache = _fake_bins(tmp_path / "cache")
    assets = _fake_bins(tmp_path / "assets", ("etcd",))
    with pytest.raises(BinariesNotFoundError) as caught:
        find_binaries({"PROMETHIOS_TESTENV_BIN": str(cache), "KUBEBUILDER_ASSETS": str(assets)})
    assert caught.value.missing == {
        "kube-apiserver": assets / "kube-apiserver",
        "kubectl": assets / "kubectl",
    }


def test_versions_env_is_parsed_and_matches_the_built_in_default() -> None:
    assert parse_versions_env("# c\nA=1\n B = 'x' # note\n\nnot a pair\n") == {"A": "1", "B": "x"}
    versions_env = find_versions_env(REPO / "operator")
    assert versions_env == REPO / "testenv" / "versions.env"
    assert kubernetes_version(versions_env) == DEFAULT_KUBERNETES_VERSION
    assert kubernetes_version() == DEFAULT_KUBERNETES_VERSION


# --------------------------------------------------------------------------- processes


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 2) == "line 98\nline 99"
    assert "cannot read" in tail(tmp_path / "missing.log")


def test_component_error_carries_the_log_tail(tmp_path: Path) -> None:
    error = ComponentError("etcd", "exited with code 2", tmp_path / "etcd.log", "boom\n")
    assert str(error).startswith("etcd exited with code 2")
    assert "boom" in str(error)
    assert str(tmp_path / "etcd.log") in str(error)


def test_kubectl_error_shows_stderr() -> None:
    error = KubectlError(
        1,
        ["kubectl", "get", "nope"],
        "",
        'error: the server doesn\'t have a resource type "nope"\n',
    )
    assert isinstance(error, subprocess.CalledProcessError)
    assert str(error).endswith('resource type "nope"')


def test_managed_process_logs_and_stops_with_sigterm(tmp_path: Path) -> None:
    script = "import time; print('hello', flush=True); time.sleep(60)"
    process = ManagedProcess("sleeper", [sys.executable, "-c", script], tmp_path / "s.log")
    process.start()
    deadline = time.monotonic() + 10
    while "hello" not in tail(process.log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "hello" in tail(process.log_path)
    assert process.running()
    assert os.getpgid(process.pid or 0) == process.pid  # its own process group
    process.stop(timeout=5)
    assert not process.running()
    assert process.exit_code() == -signal.SIGTERM


def test_managed_process_escalates_to_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    process = ManagedProcess("stubborn", [sys.executable, "-c", script], tmp_path / "s.log")
    process.start()
    deadline = time.monotonic() + 10
    while "ready" not in tail(process.log_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.stop(timeout=0.5)
    assert process.exit_code() == -signal.SIGKILL


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_children_die_when_the_parent_is_killed(tmp_path: Path) -> None:
    parent = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from promethios_local.localcluster.process import ManagedProcess
        p = ManagedProcess("child", [sys.executable, "-c", "import time; time.sleep(60)"],
                           Path({str(tmp_path / "child.log")!r}))
        p.start()
        print(p.pid, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = psutil.Process(int(proc.stdout.readline()))
    try:
        assert child.is_running()
        proc.kill()
        proc.wait(5)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if _alive(child):
            child.kill()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
