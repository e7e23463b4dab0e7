"""The dashboard against the real API server: real TokenReviews and SubjectAccessReviews.

The dashboard runs in-process (:func:`promethios.dashboard.main.start_dashboard`) with the
session's admin client for its watches and reviews; viewers are ServiceAccounts whose
tokens come from ``kubectl create token``. ``viewer`` may read and patch GovernedAgents and
list Events in namespace A only; ``reader`` may only get GovernedAgents in A.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import yaml

from promethios.dashboard.main import DashboardRunner, DashboardSettings, start_dashboard

pytestmark = pytest.mark.usefixtures("crds_installed")
API = "governance.promethios.ai/v1alpha1"


def agent(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "GovernedAgent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "registry.example/agent:1",
            "modelProvider": {"type": "openai"},
            "governance": {"policyRef": {"name": "policy"}, "onBreach": "Quarantine"},
        },
    }


def role(namespace: str, name: str, rules: list[dict[str, Any]], sa: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": sa, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": namespace}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]},
    ]  # fmt: skip


@dataclass
class World:
    cluster: Any
    a: str
    b: str

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return str(self.cluster.kubectl(*args, input=input).stdout)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def token(self, sa: str) -> str:
        return self.kubectl("create", "token", sa, "-n", self.a, "--duration=10m").strip()

    def agent(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "governedagent", name, "-n", namespace,
                                            "-o", "json", "--show-managed-fields")))  # fmt: skip


@pytest.fixture
def world(cluster: Any, namespace: str) -> Iterator[World]:
    other = f"t-dash-b-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", other)
    world = World(cluster, namespace, other)
    group = {"apiGroups": ["governance.promethios.ai"], "resources": ["governedagents"]}
    world.apply(
        *role(namespace, "viewer", [{**group, "verbs": ["get", "list", "watch", "patch"]},
                                    {"apiGroups": [""], "resources": ["events"],
                                     "verbs": ["list"]}], "viewer"),
        *role(namespace, "reader", [{**group, "verbs": ["get"]}], "reader"),
        agent(namespace, "alpha"),
        agent(other, "gamma"),
    )  # fmt: skip
    try:
        yield world
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


@pytest.fixture
async def dashboard(api_client: Any, world: World) -> AsyncIterator[DashboardRunner]:
    settings = DashboardSettings(host="127.0.0.1", port=0, namespaces=(world.a, world.b))
    running = await start_dashboard(settings, api_client)
    try:
        for _ in range(200):
            if running.dashboard.cache.ready and len(running.dashboard.cache.agents) == 2:
                break
            await asyncio.sleep(0.1)
        assert running.dashboard.cache.ready, "the dashboard's watches never listed"
        yield running
    finally:
        await running.stop()


class Browser:
    """An HTTP client with its own cookie jar (cookies on 127.0.0.1 are accepted)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.session.get(self.base + path, **kwargs) as response:
            return response.status, await response.text()

    async def post(self, path: str, data: dict[str, str], **kwargs: Any) -> tuple[int, str]:
        async with self.session.post(self.base + path, data=data, **kwargs) as response:
            return response.status, await response.text()

    async def sign_in(self, token: str) -> tuple[int, str]:
        _, page = await self.get("/login")
        return await self.post("/login", {"token": token, "csrf": csrf(page), "next": "/"})


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:300]
    return found.group(1)


@pytest.fixture
async def browser(dashboard: DashboardRunner) -> AsyncIterator[Browser]:
    client = Browser(f"http://127.0.0.1:{dashboard.port}")
    try:
        yield client
    finally:
        await client.session.close()


async def test_tokenreview_and_subjectaccessreview_decide_what_is_shown(
    world: World, browser: Browser
) -> None:
    status, page = await browser.sign_in("not-a-real-token")
    assert status == 401 and "did not accept" in page
    status, page = await browser.sign_in(world.token("viewer"))
    assert status == 200
    assert f"system:serviceaccount:{world.a}:viewer" in page
    assert f"{world.a}/alpha" in page and "gamma" not in page and world.b not in page
    assert (await browser.get(f"/agents/{world.b}/gamma"))[0] == 404
    status, page = await browser.get(f"/agents/{world.a}/alpha")
    assert status == 200 and "Acknowledge" not in page  # no breach yet
    async with browser.session.get(
        browser.base + "/api/v1/governance/summary?range=1h",
        headers={"Authorization": f"Bearer {world.token('reader')}"},
        cookies={},
    ) as response:
        document = await response.json()
    assert [a["agentId"] for a in document["agents"]] == [f"{world.a}/alpha"]


async def test_acknowledge_patches_as_the_viewer_and_a_reader_may_not(
    world: World, browser: Browser, dashboard: DashboardRunner
) -> None:
    enforcement = {"action": "Quarantined", "breach": 1, "reason": "critical violation"}
    patch = json.dumps({"status": {"enforcement": enforcement}})
    world.kubectl("patch", "governedagent", "alpha", "-n", world.a, "--subresource=status",
                  "--type=merge", "-p", patch)  # fmt: skip
    cache = dashboard.dashboard.cache
    for _ in range(100):
        row = cache.agents.get(f"{world.a}/alpha")
        if row is not None and row.breach == 1:
            break
        await asyncio.sleep(0.1)
    reader = Browser(browser.base)
    try:
        await reader.sign_in(world.token("reader"))
        status, page = await reader.get(f"/agents/{world.a}/alpha")
        assert status == 200 and "Read only" in page and "You may not list Events" in page
        refused, _ = await reader.post(f"/agents/{world.a}/alpha/acknowledge",
                                       {"csrf": csrf(page), "breach": "1"})  # fmt: skip
        assert refused == 403
    finally:
        await reader.session.close()
    assert world.agent(world.a, "alpha")["spec"]["governance"].get("acknowledgedBreach", 0) == 0

    await browser.sign_in(world.token("viewer"))
    status, page = await browser.get(f"/agents/{world.a}/alpha")
    assert "Acknowledge breach #1" in page
    status, page = await browser.post(f"/agents/{world.a}/alpha/acknowledge",
                                      {"csrf": csrf(page), "breach": "1"})  # fmt: skip
    assert status == 200 and "Breach acknowledged." in page
    stored = world.agent(world.a, "alpha")
    assert stored["spec"]["governance"]["acknowledgedBreach"] == 1
    managers = {entry["manager"] for entry in stored["metadata"]["managedFields"]}
    assert "promethios-dashboard" in managers  # the patch was made with the viewer's token
    forged, _ = await browser.post(f"/agents/{world.a}/alpha/suspend", {"suspend": "true"})
    assert forged == 403
    assert world.agent(world.a, "alpha")["spec"].get("suspend") is not True
