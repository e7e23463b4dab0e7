"""Locating the control-plane binaries that ``make testenv`` builds.

Lookup order for the directory holding ``etcd``, ``kube-apiserver``,
``kube-controller-manager``, ``kube-scheduler``, ``kubectl`` and ``kwok``:

1. ``$PROMETHIOS_TESTENV_BIN`` when set;
2. otherwise the cache ``${XDG_CACHE_HOME:-~/.cache}/promethios/testenv/<k8s version>/bin``
   that ``testenv/build.sh`` fills.

When ``$KUBEBUILDER_ASSETS`` is set (controller-runtime's envtest convention), ``etcd``,
``kube-apiserver`` and ``kubectl`` are taken from there instead; the other binaries still
come from the directory above.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import BinariesNotFoundError

DEFAULT_KUBERNETES_VERSION = "v1.37.2"
ENV_BIN_DIR = "PROMETHIOS_TESTENV_BIN"
ENV_KUBEBUILDER_ASSETS = "KUBEBUILDER_ASSETS"
KUBEBUILDER_COMPONENTS = ("etcd", "kube-apiserver", "kubectl")
REQUIRED_COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the control-plane executables."""

    bin_dir: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    helm: Path | None = None


def find_versions_env(start: Path | None = None) -> Path | None:
    """Find ``testenv/versions.env`` in ``start`` or one of its parents (the checkout)."""
    here = (start or Path(__file__)).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "testenv" / "versions.env"
        if candidate.is_file():
            return candidate
    return None


def parse_versions_env(text: str) -> dict[str, str]:
    """Parse the ``KEY=value`` lines of ``versions.env`` (comments and blanks ignored)."""
    versions: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip().strip("\"'")
    return versions


def kubernetes_version(versions_env: Path | None = None) -> str:
    """The pinned Kubernetes version (from ``versions.env`` in a checkout, else built in)."""
    path = versions_env or find_versions_env()
    if path is None:
        return DEFAULT_KUBERNETES_VERSION
    return parse_versions_env(path.read_text()).get(
        "KUBERNETES_VERSION", DEFAULT_KUBERNETES_VERSION
    )


def default_bin_dir(env: Mapping[str, str], version: str) -> Path:
    """The cache directory ``testenv/build.sh`` writes to, for ``version``."""
    cache_home = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")) / ".cache")
    return Path(cache_home).expanduser() / "promethios" / "testenv" / version / "bin"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def candidate_paths(env: Mapping[str, str], version: str) -> dict[str, Path]:
    """Where each required component is looked for, honouring the environment overrides."""
    bin_dir = Path(env[ENV_BIN_DIR]).expanduser() if env.get(ENV_BIN_DIR) else None
    bin_dir = bin_dir or default_bin_dir(env, version)
    paths = {name: bin_dir / name for name in REQUIRED_COMPONENTS}
    assets = env.get(ENV_KUBEBUILDER_ASSETS)
    if assets:
        for name in KUBEBUILDER_COMPONENTS:
            paths[name] = Path(assets).expanduser() / name
    return paths


def find_binaries(env: Mapping[str, str] | None = None, version: str | None = None) -> Binaries:
    """Locate every control-plane binary, or raise :class:`BinariesNotFoundError`.

    ``env`` defaults to ``os.environ``; ``version`` to the pinned Kubernetes version.
    """
    env = os.environ if env is None else env
    paths = candidate_paths(env, version or kubernetes_version())
    missing = {name: path for name, path in paths.items() if not _is_executable(path)}
    if missing:
        raise BinariesNotFoundError(missing)
    resolved = {name: path.absolute() for name, path in paths.items()}
    bin_dir = resolved["kwok"].parent
    helm = bin_dir / "helm"
    return Binaries(
        bin_dir=bin_dir,
        etcd=resolved["etcd"],
        kube_apiserver=resolved["kube-apiserver"],
        kube_controller_manager=resolved["kube-controller-manager"],
        kube_scheduler=resolved["kube-scheduler"],
        kubectl=resolved["kubectl"],
        kwok=resolved["kwok"],
        helm=helm if _is_executable(helm) else None,
    )
