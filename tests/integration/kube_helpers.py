"""Setup helpers shared by the integration tests (not a test module, not a conftest).

Polling, free ports, local subprocesses, ServiceAccount kubeconfigs, the api-key Secret
of :mod:`promethios.ingest.keystore`, and an in-process ingest API. Test modules import
it as ``kube_helpers`` (pytest puts this directory on ``sys.path``). Assertions stay in the
tests; these only build, start, stop and wait.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from promethios.ingest.keystore import sha256_hex
from promethios.ingest.main import IngestRunner, start_ingest
from promethios.ingest.settings import IngestSettings
from promethios_local.localcluster import find_binaries


def wait_for(
    predicate: Callable[[], Any],
    what: str,
    timeout: float = 30.0,
    interval: float = 0.2,
    check: Callable[[], None] | None = None,
) -> Any:
    """Poll until ``predicate`` is truthy and return its value; fail with ``what`` on timeout.

    ``check`` runs before every poll and may fail early (e.g. a process died).
    """
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM ``process``, wait up to ``timeout`` seconds, then kill it."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kubectl_binary() -> Path:
    """kubectl from ``PATH``, else the one the local cluster launcher uses."""
    found = shutil.which("kubectl")
    return Path(found) if found else find_binaries().kubectl


def kubectl_as(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run kubectl with ``kubeconfig`` (not the session's); never raises on failure."""
    return subprocess.run(
        [str(kubectl_binary()), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def service_account_kubeconfig(
    cluster: Any, namespace: str, service_account: str, path: Path
) -> Path:
    """Write a kubeconfig with the cluster admin's server and CA but a 1 h token of
    ``namespace/service_account`` to ``path`` (mode 0600) and return ``path``."""
    token = cluster.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    server = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": server["cluster"]}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
    }))  # fmt: skip
    path.chmod(0o600)
    return path


def b64(value: str | bytes) -> str:
    """Base64 of ``value`` (UTF-8 if a str), as Secret ``data`` holds it."""
    return base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()


def api_key_secret(agent: str, identity: str, key: str, owner_uid: str) -> dict[str, Any]:
    """The api-key Secret of ``agent`` exactly as :mod:`promethios.ingest.keystore` reads it
    (what the operator would create: owned by the GovernedAgent with uid ``owner_uid``),
    holding ``key`` for governance identity ``identity``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{agent}-api-key",
            "ownerReferences": [
                {
                    "apiVersion": "governance.promethios.ai/v1alpha1",
                    "kind": "GovernedAgent",
                    "name": agent,
                    "uid": owner_uid,
                    "controller": True,
                }
            ],
            "labels": {
                "app.kubernetes.io/managed-by": "promethios-operator",
                "promethios.ai/component": "api-key",
                "promethios.ai/agent": agent,
            },
            "annotations": {"promethios.ai/governance-identity": identity},
        },
        "data": {"apiKey": b64(key), "apiKeySha256": b64(sha256_hex(key))},
    }


async def start_ingest_ready(api_client: Any, namespace: str, **settings: Any) -> IngestRunner:
    """The real ingest app in-process on a free 127.0.0.1 port, watching ``namespace``,
    returned once its watches have listed; ``settings`` override/extend the test defaults."""
    merged: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "namespaces": (namespace,),
        "flush_interval_seconds": 30.0,
        "stale_check_seconds": 0.2,
        **settings,
    }
    runner = await start_ingest(IngestSettings(**merged), api_client=api_client)
    await asyncio.wait_for(runner.service.ready.wait(), 20)
    return runner
