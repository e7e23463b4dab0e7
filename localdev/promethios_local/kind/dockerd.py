"""A Docker daemon of the kind session's own, within the machine's network rules.

``dockerd`` (Debian's docker.io) runs with its own socket, run directory and cgroup parent
and the data root from :class:`KindPaths`. It changes no packet filter and forwards
nothing: ``--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false``, no
default bridge (``--bridge=none``). Published ports (kind's API server port on 127.0.0.1)
go through docker-proxy, a userland process. Containers run under
:mod:`promethios_local.kind.runtime` (runc without the capabilities this machine lacks).
:meth:`DockerDaemon.stop` stops it; :mod:`.sweep` removes what it leaves behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..localcluster.errors import LocalClusterError
from ..localcluster.process import ManagedProcess
from .settings import CGROUP_PARENT, KindPaths

DOCKERD = "/usr/sbin/dockerd"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
POLL = 0.2


class DockerError(LocalClusterError):
    """The session's Docker daemon could not start, or a docker command failed."""


def dockerd_argv(paths: KindPaths) -> list[str]:
    return [
        DOCKERD,
        f"--host=unix://{paths.socket}",
        f"--data-root={paths.data_root}",
        f"--exec-root={paths.exec_root}",
        f"--pidfile={paths.pidfile}",
        f"--cgroup-parent=/{CGROUP_PARENT}",
        "--exec-opt=native.cgroupdriver=cgroupfs",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        f"--add-runtime=promethios={paths.runtime_shim}",
        "--default-runtime=promethios",
    ]


class DockerDaemon:
    """Start, use and stop the session's dockerd (see the module docstring)."""

    def __init__(self, paths: KindPaths | None = None) -> None:
        self.paths = paths or KindPaths.default()
        self._process: ManagedProcess | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment for ``docker`` and ``kind``: this daemon, kind's binaries first."""
        path = f"{self.paths.kind_bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "DOCKER_HOST": f"unix://{self.paths.socket}", "PATH": path}

    def docker(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], capture_output=True, text=True,
                                env=self.env, timeout=timeout, check=False)  # fmt: skip
        if check and result.returncode != 0:
            raise DockerError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def _write_runtime_shim(self) -> None:
        shim = self.paths.runtime_shim
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m promethios_local.kind.runtime "$@"\n')
        shim.chmod(0o755)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if shutil.which("docker") is None or not Path(DOCKERD).is_file():
            raise DockerError(f"kind needs the docker CLI and {DOCKERD} (Debian docker.io)")
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        self.paths.data_root.mkdir(parents=True, exist_ok=True)
        self._write_runtime_shim()
        self._process = ManagedProcess("dockerd", dockerd_argv(self.paths), self.paths.log)
        self._process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._process.running():
                raise DockerError(f"dockerd exited:\n{self._process.log_tail()}")
            if self.docker("info", check=False, timeout=10).returncode == 0:
                return
            time.sleep(POLL)
        raise DockerError(f"dockerd did not answer within {timeout:.0f} s:\n"
                          f"{self._process.log_tail()}")  # fmt: skip

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to dockerd alone (it stops its containerd and containers' networking),
        SIGKILL to its process group if it does not exit in time. What it leaves on the
        machine is :func:`promethios_local.kind.sweep.sweep`'s to remove."""
        process = self._process
        if process is not None and process.pid is not None:
            if process.running():
                os.kill(process.pid, signal.SIGTERM)
            if not process.wait(timeout):
                process.kill()
            process.kill()  # reaps it and kills anything left in its process group
        self._process = None
