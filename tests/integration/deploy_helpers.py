"""Setup for the deploy-and-integrate tests (a helper module, not a test module).

A real ``promethios operator`` (with its in-process ingest API over TLS, the certificate it
issues, and an ``--external-ingest-url``), a fake model provider in a thread, real
``promethios sidecar`` processes, the ``promethios`` CLI as a subprocess, and kubectl.
Assertions stay in the tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kube_helpers
import yaml
from aiohttp import web
from kube_helpers import free_port

from promethios_local.demo.run import local_sidecar_config, promethios_argv
from promethios_local.demo.upstream import UpstreamLog, build_upstream_app
from promethios_local.localcluster.process import ManagedProcess

API_VERSION = "governance.promethios.ai/v1alpha1"
TLS_SECRET = "promethios-operator-ingest-tls"
WAIT = 60.0


def wait_for(predicate: Any, what: str, timeout: float = WAIT, **kwargs: Any) -> Any:
    """kube_helpers.wait_for with this module's patience."""
    return kube_helpers.wait_for(predicate, what, timeout=timeout, interval=0.3, **kwargs)


def request(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    ca_file: Path | None = None,
) -> tuple[int, Any]:
    """One HTTP request; (status, parsed JSON or text); status 0 when unreachable."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class Upstream:
    """The fake model provider, served by its own event loop in a thread."""

    def __init__(self) -> None:
        self.log = UpstreamLog()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._ready = threading.Event()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-style base URL."""
        return f"{self.root}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(build_upstream_app(self.log), access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        self.port = int(runner.addresses[0][1])
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the fake provider did not start"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Kube:
    """kubectl in one namespace, parsed."""

    def __init__(self, cluster: Any, ns: str) -> None:
        self.cluster, self.ns = cluster, ns

    def run(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.cluster.kubectl("-n", self.ns, *args, input=input, check=check)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.run("get", kind, name, "-o", "json", "--ignore-not-found").stdout
        return json.loads(out) if out.strip() else None

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        self.run("patch", kind, name, "--type=merge", "-p", json.dumps(patch))

    def secret(self, name: str, key: str) -> str:
        data = (self.get("secret", name) or {}).get("data") or {}
        return base64.b64decode(data[key]).decode()

    def status(self, agent: str) -> dict[str, Any]:
        return dict((self.get("governedagent", agent) or {}).get("status") or {})

    def condition(self, agent: str, type_: str) -> dict[str, Any]:
        conditions = self.status(agent).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def wait_ready(self, agent: str) -> None:
        self.run("wait", "--for=condition=Ready", f"governedagent/{agent}", "--timeout=60s")

    def deployment_image(self, name: str) -> str | None:
        deployment = self.get("deployment", name)
        if deployment is None:
            return None
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


class Operator:
    """``promethios operator`` with its in-process ingest API on fixed local ports."""

    def __init__(self, cluster: Any, namespaces: list[str], system_ns: str, workdir: Path) -> None:
        self.cluster, self.system_ns = cluster, system_ns
        self.ingest_port, self.metrics_port = free_port(), free_port()
        self.ingest_url = f"https://127.0.0.1:{self.ingest_port}"
        #: What External agents' sidecars report to: the same listener, by another name.
        self.external_url = f"https://localhost:{self.ingest_port}"
        self.ca_file = workdir / "ingest-ca.crt"
        argv = promethios_argv(
            "operator",
            f"--kubeconfig={cluster.kubeconfig}",
            *(f"--namespace={ns}" for ns in namespaces),
            f"--ingest-port={self.ingest_port}",
            f"--ingest-metrics-port={self.metrics_port}",
            f"--ingest-url={self.ingest_url}",
            f"--external-ingest-url={self.external_url}",
            f"--tls-secret-namespace={system_ns}",
            "--liveness-port=0",
            "--resync-seconds=600",
        )
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = ManagedProcess("operator", argv, workdir / "operator.log", env)

    def check(self) -> None:
        code = self.process.exit_code()
        assert code is None, f"the operator exited ({code}):\n{self.process.log_tail(60)}"

    def start(self) -> None:
        self.process.start()
        wait_for(
            lambda: request("GET", f"http://127.0.0.1:{self.metrics_port}/readyz")[0] == 200,
            "the operator's ingest API to be ready",
            check=self.check,
        )
        secret = Kube(self.cluster, self.system_ns).get("secret", TLS_SECRET) or {}
        self.ca_file.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))

    def stop(self) -> None:
        self.process.stop(timeout=15)


class Sidecar:
    """A ``promethios sidecar`` process from a config.json whose files are local paths."""

    def __init__(self, config: dict[str, Any], files: dict[str, Path], workdir: Path) -> None:
        self.proxy_port, self.metrics_port = free_port(), free_port()
        local = local_sidecar_config(config, files, self.proxy_port, self.metrics_port)
        self.config_path = workdir / "sidecar-config.json"
        self.config_path.write_text(json.dumps(local, indent=2))
        argv = promethios_argv("sidecar", f"--config={self.config_path}")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = ManagedProcess("sidecar", argv, workdir / "sidecar.log", env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def check(self) -> None:
        code = self.process.exit_code()
        assert code is None, f"the sidecar exited ({code}):\n{self.process.log_tail(60)}"

    def start(self) -> None:
        self.process.start()
        wait_for(
            lambda: request("GET", f"{self.url}/readyz")[0] == 200,
            "the sidecar to be ready",
            timeout=30,
            check=self.check,
        )

    def stop(self) -> None:
        self.process.stop(timeout=10)


def promethios(
    cluster: Any, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``promethios`` CLI as a person runs it (their kubeconfig); never raises."""
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    return subprocess.run(
        promethios_argv(*args), capture_output=True, text=True, env=env, cwd=cwd, timeout=60,
        check=False,
    )  # fmt: skip


def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a snippet with this interpreter and only the given environment (plus PATH)."""
    path = cwd / "snippet.py"
    path.write_text(code)
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), **env}
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, env=clean, cwd=cwd,
        timeout=60, check=False,
    )  # fmt: skip


def fenced_block(markdown: str, heading: str, language: str) -> str:
    """The first fenced ``language`` block after ``heading`` in ``markdown``."""
    after = markdown.split(heading, 1)[1]
    opening = f"```{language}\n"
    start = after.index(opening) + len(opening)
    return after[start : after.index("```", start)]


def env_table(markdown: str) -> dict[str, str]:
    """The instructions' environment table: ``| `NAME` | `value` |`` rows."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`") and cells[1].startswith("`"):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows
