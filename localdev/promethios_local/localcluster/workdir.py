"""Writing a cluster's working directory: PKI files, kubeconfigs and kwok's config."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .errors import LocalClusterError
from .layout import APISERVER_DNS_NAMES, APISERVER_IPS, Layout, Ports
from .manifests import build_kubeconfig, kwok_configuration, render_yaml
from .pki import ClientIdentity, Pki, generate_pki

log = logging.getLogger(__name__)

ADMIN_USER = "kubernetes-admin"
CLIENT_IDENTITIES: dict[str, ClientIdentity] = {
    "admin": ClientIdentity(ADMIN_USER, ("system:masters",)),
    "controller-manager": ClientIdentity("system:kube-controller-manager"),
    "scheduler": ClientIdentity("system:kube-scheduler"),
    "kwok": ClientIdentity("kwok-controller", ("system:masters",)),
}


def server_url(ports: Ports) -> str:
    """The API server's URL as every client sees it."""
    return f"https://{ports.host}:{ports.apiserver}"


def _write(path: Path, data: bytes | str, private: bool = False) -> None:
    raw = data.encode() if isinstance(data, str) else data
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)


def write_pki(layout: Layout, pki: Pki) -> None:
    """PEM files the components read: ca, apiserver, sa and one pair per client."""
    _write(layout.pki("ca.crt"), pki.ca.cert_pem)
    _write(layout.pki("ca.key"), pki.ca.key_pem, private=True)
    _write(layout.pki("apiserver.crt"), pki.serving.cert_pem)
    _write(layout.pki("apiserver.key"), pki.serving.key_pem, private=True)
    _write(layout.pki("sa.key"), pki.service_account_key_pem, private=True)
    _write(layout.pki("sa.pub"), pki.service_account_pub_pem)
    for name, pair in pki.clients.items():
        _write(layout.pki(f"{name}.crt"), pair.cert_pem)
        _write(layout.pki(f"{name}.key"), pair.key_pem, private=True)


def write_kubeconfigs(
    layout: Layout, pki: Pki, server: str, identities: dict[str, ClientIdentity]
) -> None:
    """One self-contained kubeconfig per client identity (mode 0600: they hold keys)."""
    for name, identity in identities.items():
        config = build_kubeconfig(server, pki.ca.cert_pem, pki.clients[name], identity.user)
        _write(layout.kubeconfig(name), render_yaml(config), private=True)


def clear_previous_cluster(layout: Layout) -> None:
    """Empty a reused workdir, refusing to touch anything a cluster did not write there."""
    if not layout.root.exists():
        return
    entries = list(layout.root.iterdir())
    foreign = [entry.name for entry in entries if not layout.owns(entry)]
    if foreign:
        raise LocalClusterError(
            f"workdir {layout.root} holds files a cluster did not write "
            f"({', '.join(sorted(foreign)[:5])}); use an empty or new directory"
        )
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_workdir(
    layout: Layout, ports: Ports, extra_identities: dict[str, ClientIdentity] | None = None
) -> Pki:
    """Create the directories and write every file the components need.

    A workdir left by an earlier cluster is emptied first (fresh etcd, fresh PKI).
    ``extra_identities`` (a real node's components) get a certificate and kubeconfig too;
    an API server on a non-loopback address gets that address in its certificate.
    """
    clear_previous_cluster(layout)
    for directory in layout.directories():
        directory.mkdir(parents=True, exist_ok=True)
    layout.etcd_data_dir.chmod(0o700)
    identities = {**CLIENT_IDENTITIES, **(extra_identities or {})}
    ips = APISERVER_IPS if ports.host in APISERVER_IPS else [*APISERVER_IPS, ports.host]
    pki = generate_pki(APISERVER_DNS_NAMES, ips, identities)
    write_pki(layout, pki)
    write_kubeconfigs(layout, pki, server_url(ports), identities)
    _write(layout.kwok_config, render_yaml(*kwok_configuration()))
    return pki


def remove_workdir(layout: Layout, keep_logs: bool) -> None:
    """Delete a temporary workdir; after a failed start keep its logs/ only."""
    if not keep_logs:
        shutil.rmtree(layout.root, ignore_errors=True)
        return
    for entry in layout.root.iterdir():
        if entry == layout.log_dir:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    log.warning("cluster start did not complete; component logs kept in %s", layout.log_dir)
