"""The dashboard in headless Chromium, served by a real operator against the real API server.

One ``promethios operator`` (in-process ingest, ``--dashboard-port``) watches two
namespaces. ServiceAccount ``viewer`` may read and patch GovernedAgents (and read their
Events and children) in namespace A only. The tests drive the real pages:

- an unauthenticated visitor gets the login page, whatever they ask for;
- the viewer sees A's agents and none of B's;
- a violation reported to the ingest API appears on the open agent page, without a reload
  or a restart, and quarantines the agent; acknowledging it in the page releases the
  quarantine (the operator and the ingest API act on the patch);
- the Integrations page shows the AlertSink's deliveries and Ready (written by the ingest
  API) and the Policies page the policy's Ready (written by the operator).

Screenshots of each page are saved (the path is printed at the end of the run).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kube_helpers
import pytest
import yaml
from browser import chromium
from kube_helpers import free_port

from promethios_local.demo.run import promethios_argv
from promethios_local.localcluster.process import ManagedProcess

pytestmark = [pytest.mark.usefixtures("crds_installed"), pytest.mark.browser]
API = "governance.promethios.ai/v1alpha1"
wait_for = functools.partial(kube_helpers.wait_for, timeout=60.0, interval=0.3)
PAGE_WAIT_MS = 30_000


class Receiver:
    """A webhook receiver on 127.0.0.1 counting the alerts it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Env:
    cluster: Any
    a: str
    b: str
    ingest: str
    dashboard: str
    operator: ManagedProcess

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return str(self.cluster.kubectl(*args, input=input).stdout)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found")
        return dict(json.loads(out)) if out.strip() else {}

    def check(self) -> None:
        code = self.operator.exit_code()
        if code is not None:
            pytest.fail(f"the operator exited ({code}):\n{self.operator.log_tail(80)}")


def objects(a: str, b: str, receiver_port: int) -> list[dict[str, Any]]:
    """Policy, provider Secret, AlertSink and agents in A; one agent in B; the viewer."""

    def agent(namespace: str, name: str, **governance: Any) -> dict[str, Any]:
        return {
            "apiVersion": API, "kind": "GovernedAgent",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "image": "registry.example/agent:1", "replicas": 1,
                "modelProvider": {"type": "openai",
                                  "credentialsSecretRef": {"name": "provider", "key": "apiKey"}},
                "governance": {"policyRef": {"name": "policy"}, "trustThreshold": 0.0,
                               "heartbeatIntervalSeconds": 5, **governance},
                "alertSinks": [{"name": "hook"}] if name == "alpha" else [],
            },
        }  # fmt: skip

    base = []
    for namespace in (a, b):
        base += [
            {"apiVersion": API, "kind": "GovernancePolicy",
             "metadata": {"name": "policy", "namespace": namespace},
             "spec": {"piiDetection": {"action": "redact"}}},
            {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": "provider", "namespace": namespace},
             "stringData": {"apiKey": "sk-provider-credential"}},
        ]  # fmt: skip
    rules = [
        {"apiGroups": ["governance.promethios.ai"], "resources": ["governedagents"],
         "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["governance.promethios.ai"],
         "resources": ["governancepolicies", "alertsinks"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": ["get"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get"]},
    ]  # fmt: skip
    return [
        *base,
        {"apiVersion": API, "kind": "AlertSink", "metadata": {"name": "hook", "namespace": a},
         "spec": {"type": "webhook", "url": f"http://127.0.0.1:{receiver_port}/hook",
                  "minSeverity": "high", "maxRetries": 0}},
        agent(a, "alpha", onBreach="Quarantine"),
        agent(a, "beta"),
        agent(b, "gamma"),
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "viewer", "namespace": a}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "dashboard-viewer", "namespace": a}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "dashboard-viewer", "namespace": a},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "dashboard-viewer"},
         "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": a}]},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def env(cluster: Any, crds_installed: list[str], tmp_path_factory: Any) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:6]
    a, b = f"t-dash-a-{suffix}", f"t-dash-b-{suffix}"
    ingest_port, dashboard_port = free_port(), free_port()
    log_path = tmp_path_factory.mktemp("dashboard-operator") / "operator.log"
    argv = promethios_argv(
        "operator", f"--kubeconfig={cluster.kubeconfig}", f"--namespace={a}", f"--namespace={b}",
        f"--ingest-port={ingest_port}", f"--ingest-url=http://127.0.0.1:{ingest_port}",
        f"--ingest-metrics-port={free_port()}", "--tls-mode=off",  # the dashboard is the subject
        f"--dashboard-port={dashboard_port}", "--liveness-port=0", "--resync-seconds=600",
        "--alert-sink-allow-cidr=127.0.0.1/32",
    )  # fmt: skip
    operator = ManagedProcess("operator", argv, log_path, dict(os.environ, PYTHONUNBUFFERED="1"))
    with Receiver() as receiver:
        try:
            for namespace in (a, b):
                cluster.kubectl("create", "namespace", namespace)
            cluster.kubectl("apply", "-f", "-",
                            input=yaml.safe_dump_all(objects(a, b, receiver.port)))  # fmt: skip
            operator.start()
            env = Env(cluster, a, b, f"http://127.0.0.1:{ingest_port}",
                      f"http://127.0.0.1:{dashboard_port}", operator)  # fmt: skip
            wait_for(lambda: _answers(env.dashboard + "/healthz"), "the dashboard", check=env.check)
            cluster.kubectl("wait", "--for=condition=Ready", "--timeout=90s",
                            "governedagent/alpha", "governedagent/beta", "-n", a)  # fmt: skip
            env.receiver = receiver  # type: ignore[attr-defined]
            yield env
        finally:
            operator.stop(timeout=15)
            if os.environ.get("PROMETHIOS_SHOW_OPERATOR_LOG"):
                print(operator.log_tail(300))
            cluster.kubectl("delete", "namespace", "--wait=false", a, b, check=False)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def report(env: Env, agent: str, path: str, body: dict[str, Any]) -> int:
    """A report to the ingest API with the agent's own key (what its sidecar sends)."""
    import urllib.error
    import urllib.request

    secret = env.get("secret", f"{agent}-api-key", env.a)
    key = base64.b64decode(secret["data"]["apiKey"]).decode()
    identity = env.get("governedagent", agent, env.a)["status"]["governanceIdentity"]
    agent_id = f"{env.a}/{agent}"
    request = urllib.request.Request(
        env.ingest + path, data=json.dumps({"agentId": agent_id, **body}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}",
                 "X-Agent-ID": agent_id, "X-Governance-ID": identity},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def heartbeat(env: Env, agent: str) -> int:
    body = {"status": "active", "uptime": 60, "lastActivity": "2026-01-01T00:00:00Z"}
    return report(env, agent, "/api/v1/agents/heartbeat", body)


def report_violation(env: Env, severity: str, vtype: str, description: str) -> int:
    body = {"violation": {"type": vtype, "severity": severity, "description": description},
            "idempotencyKey": uuid.uuid4().hex}  # fmt: skip
    return report(env, "alpha", "/api/v1/governance/violations", body)


def sign_in(page: Any, env: Env) -> None:
    token = env.kubectl("create", "token", "viewer", "-n", env.a, "--duration=30m").strip()
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_url(lambda url: "/login" not in url, timeout=PAGE_WAIT_MS)


def test_the_dashboard_in_a_browser(env: Env, screenshots: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with chromium(tmp_path / "profile") as context:
        page = context.new_page()

        # Unauthenticated: whatever is asked for, the login page answers; nothing else shows.
        page.goto(f"{env.dashboard}/agents/{env.a}/alpha")
        assert page.url.startswith(f"{env.dashboard}/login")
        assert "kubectl create token" in page.inner_text("main")
        assert "alpha" not in page.inner_text("main")
        page.screenshot(path=str(screenshots / "login.png"))

        # The viewer of namespace A sees A's agents and none of B's.
        assert heartbeat(env, "alpha") == 202 and heartbeat(env, "beta") == 202
        sign_in(page, env)
        assert page.url.endswith("/agents/" + env.a + "/alpha")
        page.goto(env.dashboard + "/")
        page.wait_for_selector("#fleet")
        rows = page.locator("#fleet tbody tr").all_inner_texts()
        shown = sorted(text.split()[0] for text in rows)
        assert shown == [f"{env.a}/alpha", f"{env.a}/beta"], rows
        assert env.b not in page.content()

        # A violation appears on the open agent page without a reload, and quarantines.
        page.goto(f"{env.dashboard}/agents/{env.a}/alpha")
        page.wait_for_selector("#violations")
        assert "tool.exfiltration" not in page.inner_text("#violations")
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        status = report_violation(env, "critical", "tool.exfiltration", "blocked a tool call")
        assert status == 200
        # (locator assertions: the page's CSP forbids evaluating strings as script)
        expect(page.locator("#violations")).to_contain_text(
            "tool.exfiltration", timeout=PAGE_WAIT_MS
        )
        expect(page.locator("#health")).to_have_text("Quarantined", timeout=PAGE_WAIT_MS)
        assert navigations == []  # the live region refreshed itself: no reload
        page.screenshot(path=str(screenshots / "agent-quarantined.png"), full_page=True)
        page.goto(env.dashboard + "/")
        first = page.locator("#fleet tbody tr").first.inner_text()
        assert first.startswith(f"{env.a}/alpha") and "Quarantined" in first  # worst first
        page.screenshot(path=str(screenshots / "fleet.png"), full_page=True)
        page.goto(f"{env.dashboard}/agents/{env.a}/alpha")
        wait_for(
            lambda: (
                env.get("governedagent", "alpha", env.a)["status"]["enforcement"]["action"]
                == "Quarantined"
            ),
            "alpha to be quarantined",
            check=env.check,
        )

        # Acknowledge in the page: the spec is patched (as the viewer) and the quarantine lifts.
        page.click("#acknowledge")
        page.wait_for_selector("#flash", timeout=PAGE_WAIT_MS)
        assert "Breach acknowledged." in page.inner_text("#flash")
        stored = env.get("governedagent", "alpha", env.a)
        assert stored["spec"]["governance"]["acknowledgedBreach"] == 1
        wait_for(
            lambda: (
                env.get("governedagent", "alpha", env.a)["status"]["enforcement"]["action"]
                == "None"
            ),
            "the ingest API to release the quarantine",
            check=env.check,
        )
        wait_for(
            lambda: not env.get("networkpolicy", "alpha-quarantine", env.a),
            "the operator to remove the quarantine NetworkPolicy",
            check=env.check,
        )
        expect(page.locator("#health")).not_to_have_text("Quarantined", timeout=PAGE_WAIT_MS)
        page.screenshot(path=str(screenshots / "agent-released.png"), full_page=True)

        # Integrations: the sink's deliveries and Ready, written by the ingest API.
        wait_for(lambda: len(env.receiver.received) >= 1, "the alert delivery")  # type: ignore[attr-defined]
        wait_for(
            lambda: (env.get("alertsink", "hook", env.a).get("status") or {}).get("delivered"),
            "AlertSink.status.delivered",
            check=env.check,
        )
        page.goto(env.dashboard + "/integrations")
        row = page.locator("#integrations tbody tr").first.inner_text()
        assert f"{env.a}/hook" in row and "True" in row and "webhook" in row
        assert "127.0.0.1" not in page.content()  # the sink's URL is never shown
        page.screenshot(path=str(screenshots / "integrations.png"), full_page=True)

        # Policies: Ready written by the operator, the agents using it.
        wait_for(
            lambda: (env.get("governancepolicy", "policy", env.a).get("status") or {}).get(
                "observedGeneration"
            ),
            "GovernancePolicy.status",
            check=env.check,
        )
        page.goto(env.dashboard + "/policies")
        policies = page.inner_text("#policies")
        assert f"{env.a}/policy" in policies and "alpha" in policies and env.b not in policies
        page.screenshot(path=str(screenshots / "policies.png"), full_page=True)


def test_the_in_process_ingest_summary_takes_kubernetes_tokens(env: Env) -> None:
    """Default mode has no read token: the ingest port's summary answers a viewer's token
    (TokenReview + SubjectAccessReview) with the namespaces they may see, and 401 without."""
    import urllib.error
    import urllib.request

    token = env.kubectl("create", "token", "viewer", "-n", env.a, "--duration=10m").strip()
    url = env.ingest + "/api/v1/governance/summary?range=1h"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        document = json.loads(response.read())
    agents = sorted(agent["agentId"] for agent in document["agents"])
    assert agents == [f"{env.a}/alpha", f"{env.a}/beta"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=20)
    assert refused.value.code == 401
