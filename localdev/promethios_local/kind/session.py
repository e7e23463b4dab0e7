"""A kind session: the machine prepared for ``kind create cluster`` and restored afterwards.

:class:`KindSession` is a context manager. On enter it takes the real-node host lock
(kind nodes and a real node would share the machine's tables), sweeps a killed session's
leftovers (:mod:`.sweep`), records the packet-filter baseline (in the cache, so a later
sweep can use it), starts :class:`DockerDaemon`, deletes clusters a killed session left in
the daemon's data root, creates the
``kind`` network and its guard, and loads the node image archive (``make kind-image``)
unless the daemon's cached data root already has it. On exit it deletes every kind
cluster of the daemon, the network, the guard (relative to the baseline), stops the
daemon and removes what it left; failures to remove anything are raised, not hidden.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType

from ..localcluster.process import install_sigterm_handler
from ..localcluster.realnode import host_lock
from ..localcluster.realnode.netfilter import FilterState
from .dockerd import DockerDaemon, DockerError
from .network import create_network, install_guard, remove_network
from .settings import KindPaths, node_image_archive, node_image_ref
from .sweep import save_baseline, sweep

#: e.g. ``kindest/node:v1.37.2``: use kind's published node image instead of ours.
PUBLISHED_IMAGE_ENV = "PROMETHIOS_KIND_IMAGE"


class KindSession:
    """See the module docstring."""

    def __init__(
        self,
        paths: KindPaths | None = None,
        *,
        lock_timeout: float = 1800.0,
        take_host_lock: bool = True,
    ) -> None:
        """``take_host_lock=False`` is for a child process of a holder of the lock (the
        lock is re-entrant within a process only)."""
        self.paths = paths or KindPaths.default()
        self.daemon = DockerDaemon(self.paths)
        # With a registry, kind's published image can stand in for ours (kind pulls it).
        self.published_image = os.environ.get(PUBLISHED_IMAGE_ENV, "")
        self.image = self.published_image or node_image_ref(self.paths.version)
        self.lock_timeout = lock_timeout
        self._lock = host_lock(lock_timeout) if take_host_lock else contextlib.nullcontext()
        self.load_seconds = 0.0

    @property
    def kind(self) -> Path:
        return self.paths.kind_bin / "kind"

    def __enter__(self) -> KindSession:
        install_sigterm_handler()  # SIGTERM unwinds through __exit__ instead of killing us
        self._lock.__enter__()
        try:
            self._start()
        except BaseException:
            self._stop()
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            failures = self._stop()
        finally:
            self._lock.__exit__(exc_type, exc, traceback)
        if failures and exc is None:
            raise DockerError("the kind session left traces:\n" + "\n".join(failures))

    def _start(self) -> None:
        if not self.kind.is_file():
            raise DockerError(f"{self.kind} is missing: run `make kind-image`")
        leftovers = sweep(self.paths)
        if leftovers:
            raise DockerError(
                "an earlier kind session's leftovers stayed:\n" + "\n".join(leftovers)
            )
        save_baseline(self.paths, FilterState.capture())
        self.daemon.start()
        failures = self._delete_clusters()
        if failures:
            raise DockerError("\n".join(failures))
        create_network(self.daemon)
        install_guard()
        self._load_node_image()

    def _load_node_image(self) -> None:
        """Load the node image unless the daemon has this very build (its inputs' hash,
        which node-image.sh writes beside the archive, is recorded at load time)."""
        if self.published_image:
            return
        archive = node_image_archive(self.paths.version)
        if not archive.is_file():
            raise DockerError(f"no node image archive at {archive}: run `make kind-image`")
        build = Path(f"{archive}.inputs")
        loaded = self.paths.data_root / "node-image.inputs"
        wanted = build.read_text() if build.is_file() else str(archive.stat().st_mtime)
        present = self.daemon.docker("image", "inspect", self.image, check=False).returncode == 0
        if present and loaded.is_file() and loaded.read_text() == wanted:
            return
        start = time.monotonic()
        self.daemon.docker("load", "--input", str(archive), timeout=900)
        self.daemon.docker("image", "prune", "--force", check=False)  # the replaced build
        loaded.write_text(wanted)
        self.load_seconds = time.monotonic() - start

    def load_archive(self, archive: Path) -> None:
        """``docker load`` an image archive (e.g. ``make image``'s) into the daemon."""
        self.daemon.docker("load", "--input", str(archive), timeout=900)

    def kind_command(self, *args: str, timeout: float = 900.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.kind), *args], capture_output=True, text=True,
                                env=self.daemon.env, timeout=timeout, check=False)  # fmt: skip
        if result.returncode != 0:
            raise DockerError(f"kind {' '.join(args)} failed:\n{result.stderr.strip()[-4000:]}")
        return result

    def _delete_clusters(self) -> list[str]:
        if not self.daemon.running():
            return []
        try:
            listed = self.kind_command("get", "clusters", timeout=60).stdout.split()
            for name in listed:
                self.kind_command("delete", "cluster", "--name", name, timeout=300)
        except (DockerError, subprocess.TimeoutExpired) as error:
            return [str(error)]
        return []

    def _stop(self) -> list[str]:
        failures = self._delete_clusters()
        if self.daemon.running():
            failures += remove_network(self.daemon)
        self.daemon.stop()
        return failures + sweep(self.paths)
