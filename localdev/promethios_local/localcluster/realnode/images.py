"""Images on the real node: nothing is ever pulled, everything is imported at start.

- the sandbox ("pause") image is written here as a docker-archive holding the host's
  static busybox, whose ``sleep`` keeps the pod's namespaces alive;
- image archives built by ``make image`` (docker-archive or OCI tarballs) are imported
  into containerd's ``k8s.io`` namespace, where the kubelet finds them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

from ..errors import LocalClusterError
from .settings import SANDBOX_IMAGE

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
CTR = "ctr"
PT_INTERP = 3
#: The archives ``make image`` writes (hack/image/build.sh, hack/image/e2e.sh).
IMAGE_ARCHIVE_DIR = "promethios/images/out"


class ImageError(LocalClusterError):
    """An image could not be built or imported."""


def default_archive_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")) / ".cache")
    return Path(cache).expanduser() / IMAGE_ARCHIVE_DIR


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if candidate.is_file() and _is_static(candidate):
            return candidate
    raise ImageError(
        "no static busybox for the pod sandbox image: install the Debian package "
        "busybox-static (`make host-packages`)"
    )


def _is_static(binary: Path) -> bool:
    """A 64-bit ELF file without a PT_INTERP program header (no dynamic loader)."""
    with binary.open("rb") as handle:
        header = handle.read(64)
        if header[:5] != b"\x7fELF\x02":
            return False
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    types = [int.from_bytes(table[i : i + 4], "little") for i in range(0, len(table), phentsize)]
    return PT_INTERP not in types


def _tar_member(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    return info, data


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sandbox_archive(busybox: Path, reference: str = SANDBOX_IMAGE) -> bytes:
    """A docker-archive (``docker save`` format) of a one-file image running busybox sleep."""
    layer = _tar_bytes([_tar_member("bin/busybox", busybox.read_bytes(), 0o755)])
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"], "User": "65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        },
        sort_keys=True,
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [reference], "Layers": [f"{layer_digest}.tar"]}]
    ).encode()
    return _tar_bytes(
        [
            _tar_member(f"{layer_digest}.tar", layer),
            _tar_member(config_name, config),
            _tar_member("manifest.json", manifest),
        ]
    )


def import_archive(socket: Path, archive: Path, timeout: float = 300.0) -> None:
    """``ctr images import`` into the CRI namespace (unpacked for the kubelet's use)."""
    argv = [
        CTR,
        "--address",
        str(socket),
        "--namespace",
        "k8s.io",
        "images",
        "import",
        str(archive),
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ImageError("ctr not found: install containerd (`make host-packages`)") from None
    if result.returncode != 0:
        raise ImageError(f"importing {archive} failed: {result.stderr.strip()}")


def image_names(socket: Path) -> list[str]:
    argv = [CTR, "--address", str(socket), "--namespace", "k8s.io", "images", "list", "-q"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return sorted(result.stdout.split()) if result.returncode == 0 else []
