"""``promethios demo`` (``make run``): a governed agent, live, on this machine.

Starts the embedded control plane, installs the CRDs, starts the operator with its
in-process ingest API, applies a sample policy and GovernedAgent, and — because kwok
pods run no containers — runs the agent's governance sidecar as a local process wired
exactly as it is in the pod (the operator's ConfigMap and Secrets, as files), in front
of a local fake model provider. The sample agent makes model calls through the
sidecar, one of which leaks PII, so a violation flows sidecar → ingest → the
GovernedAgent's status. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from promethios.api.crdgen import all_crds
from promethios.api.sidecarconfig import CONFIG_KEY
from promethios.builders.sidecar import CA_BUNDLE_KEY
from promethios_local.localcluster import LocalCluster, LocalClusterError, free_ports
from promethios_local.localcluster.process import ManagedProcess

from .agent import run_agent
from .samples import DEMO_AGENT, DEMO_NAMESPACE, demo_objects
from .upstream import UpstreamLog, build_upstream_app

#: Where the demo's operator keeps the ingest API's TLS Secret (as an install would).
OPERATOR_NAMESPACE = "promethios-system"


def say(message: str) -> None:
    """Progress output for the person running the demo."""
    print(f"==> {message}", flush=True)


def promethios_argv(*args: str) -> list[str]:
    """Run a ``promethios`` subcommand with this interpreter (works without the venv on PATH)."""
    return [sys.executable, "-m", "promethios.cli", *args]


def local_sidecar_config(
    config: dict[str, Any], files: dict[str, Path], proxy_port: int, metrics_port: int
) -> dict[str, Any]:
    """The pod's sidecar config, rewritten for a process on this machine.

    Only paths and ports change; the policy, identity and ingest URL are the
    operator's, byte for byte. The ingest API's CA bundle (``ca.crt`` of the ConfigMap)
    is expected at ``files["ca"]``.
    """
    local: dict[str, Any] = json.loads(json.dumps(config))
    local["ingest"]["apiKeyFile"] = str(files["api_key"])
    if local["ingest"].get("caFile"):
        local["ingest"]["caFile"] = str(files["ca"])
    if local["provider"].get("credentialFile"):
        local["provider"]["credentialFile"] = str(files["credential"])
    local["spoolDir"] = str(files["spool"])
    local["proxyPort"], local["metricsPort"] = proxy_port, metrics_port
    return local


class Demo:
    """Everything ``make run`` starts, in start order, stopped in reverse."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.report_path: Path | None = None
        self.cluster: LocalCluster | None = None
        self.processes: list[ManagedProcess] = []
        self.upstream_log = UpstreamLog()
        # Distinct free loopback ports: ingest API, its metrics/probes, model proxy,
        # operator liveness, sidecar metrics, fake model provider.
        (
            self.ingest_port,
            self.ingest_metrics_port,
            self.proxy_port,
            self.liveness_port,
            self.metrics_port,
            self.upstream_port,
        ) = free_ports(6)

    # ------------------------------------------------------------------ steps

    def start_cluster(self) -> None:
        say("starting the embedded Kubernetes control plane (etcd, apiserver, kwok nodes)")
        self.cluster = LocalCluster(nodes=2, workdir=self.workdir / "cluster").start()
        say(f"control plane ready in {self.cluster.startup_seconds:.1f} s")

    def kubectl(self, *args: str, input: str | None = None) -> str:
        assert self.cluster is not None
        return self.cluster.kubectl(*args, input=input).stdout

    def install_crds(self) -> None:
        say("installing the CRDs (GovernedAgent, GovernancePolicy, AlertSink)")
        manifests = yaml.safe_dump_all(all_crds(), sort_keys=False)
        self.kubectl(
            "apply", "--server-side", "--field-manager=promethios-demo", "-f", "-", input=manifests
        )
        for crd in all_crds():
            self.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                f"crd/{crd['metadata']['name']}",
            )

    def start_operator(self) -> None:
        assert self.cluster is not None
        say(f"starting the operator with its ingest API on https://127.0.0.1:{self.ingest_port}")
        # The operator issues the ingest API's certificate into a Secret in its own
        # namespace (--tls-mode=auto, the default), as it does when the chart installs it.
        self.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        argv = promethios_argv(
            "operator",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--namespace={DEMO_NAMESPACE}",
            f"--ingest-port={self.ingest_port}",
            f"--ingest-metrics-port={self.ingest_metrics_port}",
            f"--ingest-url=https://127.0.0.1:{self.ingest_port}",
            f"--tls-secret-namespace={OPERATOR_NAMESPACE}",
            f"--liveness-port={self.liveness_port}",
        )
        self._spawn("operator", argv)

    def apply_samples(self, upstream_url: str) -> None:
        say("applying a GovernancePolicy, a provider Secret and the GovernedAgent 'support-bot'")
        objects = yaml.safe_dump_all(demo_objects(upstream_url), sort_keys=False)
        self.kubectl(
            "apply", "--server-side", "--field-manager=promethios-demo", "-f", "-", input=objects
        )

    def wait_ready(self, timeout: int) -> None:
        say("waiting for the GovernedAgent to become Ready")
        self.kubectl(
            "wait",
            "-n",
            DEMO_NAMESPACE,
            "--for=condition=Ready",
            f"--timeout={timeout}s",
            f"ga/{DEMO_AGENT}",
        )

    def start_sidecar(self) -> None:
        say(f"starting the agent's governance sidecar (model proxy on 127.0.0.1:{self.proxy_port})")
        data = self._config_map_data()
        config = json.loads(data[CONFIG_KEY])
        files = {
            "api_key": self.workdir / "api-key",
            "credential": self.workdir / "provider-credential",
            "spool": self.workdir / "spool",
            "ca": self.workdir / "ingest-ca.crt",
        }
        files["spool"].mkdir(exist_ok=True)
        files["ca"].write_text(data.get(CA_BUNDLE_KEY, ""))
        files["api_key"].write_text(self._secret_value(f"{DEMO_AGENT}-api-key", "apiKey"))
        provider_ref = self._agent()["spec"]["modelProvider"].get("credentialsSecretRef")
        if provider_ref:
            files["credential"].write_text(
                self._secret_value(provider_ref["name"], provider_ref.get("key", "apiKey"))
            )
        for path in (files["api_key"], files["credential"]):
            if path.exists():
                path.chmod(0o600)
        local = local_sidecar_config(config, files, self.proxy_port, self.metrics_port)
        config_path = self.workdir / "sidecar-config.json"
        config_path.write_text(json.dumps(local, indent=2))
        # The sidecar verifies the ingest API against the operator's CA bundle (caFile).
        self._spawn("sidecar", promethios_argv("sidecar", f"--config={config_path}"))

    # ------------------------------------------------------------------ reading back

    def _agent(self) -> dict[str, Any]:
        out = self.kubectl("get", "-n", DEMO_NAMESPACE, f"ga/{DEMO_AGENT}", "-o", "json")
        agent: dict[str, Any] = json.loads(out)
        return agent

    def _config_map_data(self) -> dict[str, str]:
        out = self.kubectl(
            "get", "-n", DEMO_NAMESPACE, f"configmap/{DEMO_AGENT}-governance", "-o", "json"
        )
        data: dict[str, str] = json.loads(out)["data"]
        return data

    def _secret_value(self, name: str, key: str) -> str:
        out = self.kubectl("get", "-n", DEMO_NAMESPACE, f"secret/{name}", "-o", "json")
        return base64.b64decode(json.loads(out)["data"][key]).decode()

    def status_summary(self) -> tuple[int, str | None]:
        """(violations recorded, last heartbeat) from the GovernedAgent's status."""
        status = self._agent().get("status", {})
        total = int(status.get("governance", {}).get("violations", {}).get("total", 0))
        return total, status.get("heartbeat", {}).get("lastHeartbeat")

    def report(self) -> dict[str, Any]:
        """What a headless run proves: the resource as stored, and the upstream's view."""
        return {
            "governedAgent": self._agent(),
            "upstreamCredentials": sorted(set(self.upstream_log.credentials)),
            "upstreamCalls": len(self.upstream_log.paths),
        }

    def show(self) -> None:
        print(self.kubectl("get", "ga", "-n", DEMO_NAMESPACE, "-o", "wide"), flush=True)

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, argv: list[str], env_extra: dict[str, str] | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
        process = ManagedProcess(name, argv, self.workdir / f"{name}.log", env)
        process.start()
        self.processes.append(process)

    def check_processes(self) -> None:
        for process in self.processes:
            code = process.exit_code()
            if code is not None:
                raise RuntimeError(
                    f"{process.name} exited with code {code}; last log lines:\n{process.log_tail()}"
                )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.cluster is not None:
            self.cluster.stop()


async def wait_http(url: str, within: float, demo: Demo) -> None:
    """Poll ``url`` until it answers 200, failing early if a started process died."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            demo.check_processes()
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {within:.0f} s")


async def wait_for_governance_data(demo: Demo, within: float) -> tuple[int, str | None]:
    """Wait until the status shows a heartbeat and at least one violation."""
    deadline = time.monotonic() + within
    violations, heartbeat = 0, None
    while time.monotonic() < deadline:
        demo.check_processes()
        violations, heartbeat = await asyncio.to_thread(demo.status_summary)
        if violations >= 1 and heartbeat:
            return violations, heartbeat
        await asyncio.sleep(1)
    raise TimeoutError(
        f"status shows {violations} violations and heartbeat {heartbeat!r} after {within:.0f} s"
    )


async def run_demo(demo: Demo, headless: bool, wait_seconds: float) -> int:
    """The demo's steps; returns the exit code."""
    runner = web.AppRunner(build_upstream_app(demo.upstream_log))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", demo.upstream_port).start()
    try:
        cluster = demo.cluster
        assert cluster is not None
        await asyncio.to_thread(demo.install_crds)
        demo.start_operator()
        await wait_http(f"http://127.0.0.1:{demo.ingest_metrics_port}/healthz", 60, demo)
        await asyncio.to_thread(demo.apply_samples, f"http://127.0.0.1:{demo.upstream_port}/v1")
        await asyncio.to_thread(demo.wait_ready, int(wait_seconds))
        await asyncio.to_thread(demo.start_sidecar)
        await wait_http(f"http://127.0.0.1:{demo.proxy_port}/readyz", 60, demo)
        say("the sample agent makes model calls through its sidecar (one leaks PII)")
        for result in await run_agent(f"http://127.0.0.1:{demo.proxy_port}/v1", pause=0.2):
            print(f"    {result.status}  {result.prompt[:48]!r:52} -> {result.reply[:60]!r}")
        violations, heartbeat = await wait_for_governance_data(demo, wait_seconds)
        say(
            f"governance data reached the resource: {violations} violation(s), "
            f"last heartbeat {heartbeat}"
        )
        demo.show()
        leaked = [c for c in demo.upstream_log.credentials if c and "sk-demo" not in c]
        say(
            f"the model provider saw {len(demo.upstream_log.credentials)} calls, all with the "
            f"sidecar's credential{'' if not leaked else ' (and others: ' + str(leaked) + ')'}"
        )
        if demo.report_path is not None:
            demo.report_path.write_text(json.dumps(demo.report(), indent=2))
        if headless:
            return 0
        print(next_steps(cluster.kubeconfig), flush=True)
        while True:  # keep the agent alive and reporting until Ctrl-C
            await asyncio.sleep(15)
            demo.check_processes()
            await run_agent(f"http://127.0.0.1:{demo.proxy_port}/v1", pause=1)
    finally:
        await runner.cleanup()


def next_steps(kubeconfig: Path) -> str:
    """What to try next, printed once the demo is live."""
    return f"""
The demo is live. In another shell:

    export KUBECONFIG={kubeconfig}
    kubectl get ga -n {DEMO_NAMESPACE} -w                # Ready, Trust, Violations, Heartbeat
    kubectl describe ga -n {DEMO_NAMESPACE} {DEMO_AGENT}     # conditions and violation events
    kubectl get ga -n {DEMO_NAMESPACE} {DEMO_AGENT} -o jsonpath='{{.status.governance}}'
    kubectl patch ga -n {DEMO_NAMESPACE} {DEMO_AGENT} --type=merge \\
        -p '{{"spec":{{"suspend":true}}}}'

Press Ctrl-C to stop everything.
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="promethios demo", description=__doc__)
    parser.add_argument(
        "--headless",
        action="store_true",
        help="exit 0 once governance data reached the resource (for tests)",
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds per wait")
    parser.add_argument("--workdir", help="keep state here instead of a temporary directory")
    parser.add_argument("--report", help="write the final GovernedAgent and upstream view as JSON")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Entry point of ``promethios demo``."""
    args = parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="promethios-demo-")).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(workdir)
    demo.report_path = Path(args.report).absolute() if args.report else None
    try:
        # The cluster's processes die with the thread that started them
        # (PR_SET_PDEATHSIG), so start it here on the main thread.
        demo.start_cluster()
        return asyncio.run(run_demo(demo, args.headless, args.timeout))
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except (RuntimeError, TimeoutError, LocalClusterError) as error:
        say(f"demo failed: {error}\n    logs: {workdir}")
        return 1
    finally:
        demo.stop()
        if not args.workdir and not os.environ.get("PROMETHIOS_KEEP_DEMO"):
            shutil.rmtree(workdir, ignore_errors=True)
