"""Admission on GovernedAgents: the operator is nobody's confused deputy.

Whoever creates a GovernedAgent gets the operator to create pods, mount a Secret as the
provider credential and run a sidecar image that receives that credential and the agent's
ingest key. The chart's ValidatingAdmissionPolicy (installed here by ``helm install``, as
shipped) refuses a create or update unless the *requesting user* may do those things:
``create`` on pods; ``get`` on the referenced Secret; ``create`` on the virtual subresource
``governedagents/sidecarimage`` for a custom sidecar image. Updates re-check only what
changed; status writes and the operator's own ServiceAccount are never subject to it.

Users are impersonated (``kubectl --as``) and hold only the Roles each test grants; the
operator runs with a token of the chart's ServiceAccount, as in ``test_rbac_flow.py``.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kube_helpers
import pytest
import yaml
from kube_helpers import free_port, service_account_kubeconfig, stop_process
from test_install import CHART, MANIFESTS, Helm, helm_path, unique

pytestmark = pytest.mark.usefixtures("crds_installed")
WAIT = 60.0
wait_for = functools.partial(kube_helpers.wait_for, timeout=WAIT, interval=0.3)

GROUP = "governance.promethios.ai"
SECRET = "openai-credentials"
CUSTOM_SIDECAR = "registry.example.com/custom-sidecar:1"
DENIED = "denied request"


@dataclass(frozen=True)
class Install:
    """A chart release whose admission policy is bound to the namespace ``agents``."""

    release: str
    release_ns: str
    agents: str
    fullname: str

    @property
    def operator_user(self) -> str:
        return f"system:serviceaccount:{self.release_ns}:{self.fullname}"


def agent_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """The sample GovernedAgent (manifests/samples/) named ``name``, spec keys overridden."""
    sample = yaml.safe_load((MANIFESTS / "samples" / "04-governedagent.yaml").read_text())
    sample = copy.deepcopy(sample)
    sample["metadata"] = {"name": name}
    sample["spec"].update(spec)
    return dict(sample)


def grant(cluster: Any, ns: str, user: str, name: str, *rules: dict[str, Any]) -> None:
    """A Role with ``rules`` bound to ``user`` (a user name or a ServiceAccount's) in ``ns``."""
    subject = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}
    objects = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": ns}, "rules": list(rules)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [subject]},
    ]  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


AUTHOR = {"apiGroups": [GROUP], "resources": ["governedagents"],
          "verbs": ["create", "get", "list", "watch", "update", "patch"]}  # fmt: skip
PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}
READ_SECRET = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET],
               "verbs": ["get"]}  # fmt: skip
STATUS = {"apiGroups": [GROUP], "resources": ["governedagents/status"], "verbs": ["get", "patch"]}


@pytest.fixture(scope="module")
def install(cluster: Any, crds_installed: Any, tmp_path_factory: Any) -> Iterator[Install]:
    """The chart installed with watchNamespaces=[agents]; users alice..dave in ``agents``.

    - alice: may create and change GovernedAgents, nothing else;
    - bob: alice + create pods;
    - carol: bob + get the provider Secret;
    - dave: carol + the chart's ClusterRole for custom sidecar images.
    """
    helm = Helm(helm_path(), Path(cluster.kubeconfig), tmp_path_factory.mktemp("helm"))
    release_ns, agents, release = unique("t-adm-op"), unique("t-adm-agents"), unique("adm")
    for namespace in (release_ns, agents):
        cluster.kubectl("create", "namespace", namespace)
    helm("install", release, str(CHART), "-n", release_ns, "--set", "crds.install=false",
         "--set", "replicaCount=0", "--set", f"watchNamespaces={{{agents}}}")  # fmt: skip
    fullname = f"{release}-promethios-operator"
    try:
        grant(cluster, agents, "alice", "alice", AUTHOR, STATUS)
        grant(cluster, agents, "bob", "bob", AUTHOR, PODS)
        grant(cluster, agents, "carol", "carol", AUTHOR, PODS, READ_SECRET)
        grant(cluster, agents, "dave", "dave", AUTHOR, PODS, READ_SECRET)
        cluster.kubectl("create", "rolebinding", "dave-sidecar-image", "-n", agents,
                        f"--clusterrole={fullname}-sidecar-image", "--user=dave")  # fmt: skip
        samples = [
            doc for path in sorted((MANIFESTS / "samples").glob("0[123]-*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc
        ]  # fmt: skip
        cluster.kubectl("apply", "-n", agents, "-f", "-", input=yaml.safe_dump_all(samples))
        installed = Install(release, release_ns, agents, fullname)
        # A new policy takes effect once the API server's informer has it: wait for a refusal.
        wait_for(lambda: DENIED in create_as(cluster, installed, "alice",
                                             agent_manifest("probe"), dry_run=True).stderr,
                 "the admission policy to refuse alice")  # fmt: skip
        yield installed
    finally:
        helm("uninstall", release, "-n", release_ns, "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", "--wait=false", release_ns, agents, check=False)


def create_as(
    cluster: Any, install: Install, user: str, manifest: dict[str, Any], dry_run: bool = False
) -> subprocess.CompletedProcess[str]:
    """``kubectl create`` of ``manifest`` in the agents' namespace, as ``user``."""
    extra = ["--dry-run=server"] if dry_run else []
    return cluster.kubectl(f"--as={user}", "create", "-n", install.agents, *extra, "-f", "-",
                           input=json.dumps(manifest), check=False)  # fmt: skip


def patch_as(
    cluster: Any, install: Install, user: str, name: str, patch: dict[str, Any], *extra: str
) -> subprocess.CompletedProcess[str]:
    """A merge patch of GovernedAgent ``name`` as ``user``."""
    return cluster.kubectl(f"--as={user}", "patch", "governedagent", name, "-n", install.agents,
                           "--type=merge", "-p", json.dumps(patch), *extra,
                           check=False)  # fmt: skip


def exists(cluster: Any, install: Install, name: str) -> bool:
    result = cluster.kubectl("get", "governedagent", name, "-n", install.agents,
                             "--ignore-not-found", "-o", "name")  # fmt: skip
    return bool(result.stdout.strip())


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The refusal's text, after checking it is the policy's 403 and names ``words``."""
    assert result.returncode != 0, result.stdout
    assert "Forbidden" in result.stderr and DENIED in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)
    return result.stderr


# ---- create ----------------------------------------------------------------------------------


def test_a_user_who_may_not_create_pods_is_refused_naming_the_permission(
    cluster: Any, install: Install
) -> None:
    result = create_as(cluster, install, "alice", agent_manifest("by-alice"))
    refused(result, "spec:", "alice", "'create' on pods", f"namespace {install.agents}")
    assert not exists(cluster, install, "by-alice")


def test_a_user_who_may_not_read_the_secret_is_refused_naming_the_field(
    cluster: Any, install: Install
) -> None:
    result = create_as(cluster, install, "bob", agent_manifest("by-bob"))
    refused(result, "spec.modelProvider.credentialsSecretRef", "bob", f"'get' on secrets/{SECRET}")
    assert not exists(cluster, install, "by-bob")
    # The same agent without a credential reference needs no Secret: bob is admitted.
    no_secret = agent_manifest("by-bob-keyless")
    del no_secret["spec"]["modelProvider"]["credentialsSecretRef"]
    assert create_as(cluster, install, "bob", no_secret).returncode == 0
    assert exists(cluster, install, "by-bob-keyless")


def test_a_fully_entitled_user_is_admitted(cluster: Any, install: Install) -> None:
    result = create_as(cluster, install, "carol", agent_manifest("by-carol"))
    assert result.returncode == 0, result.stderr
    assert exists(cluster, install, "by-carol")


def test_a_custom_sidecar_image_needs_the_sidecarimage_permission(
    cluster: Any, install: Install
) -> None:
    manifest = agent_manifest("custom-sidecar", sidecar={"image": CUSTOM_SIDECAR})
    result = create_as(cluster, install, "carol", manifest)
    refused(result, "spec.sidecar.image", "carol", "'create' on governedagents/sidecarimage",
            f"{install.fullname}-sidecar-image")  # fmt: skip
    assert not exists(cluster, install, "custom-sidecar")
    result = create_as(cluster, install, "dave", manifest)
    assert result.returncode == 0, result.stderr


# ---- update ----------------------------------------------------------------------------------


def test_updates_recheck_only_what_changed(cluster: Any, install: Install) -> None:
    name = "shared"
    assert create_as(cluster, install, "carol", agent_manifest(name)).returncode == 0
    # Metadata only: no pod changes, so alice (no pods, no Secret) may label it.
    labelled = patch_as(cluster, install, "alice", name, {"metadata": {"labels": {"a": "b"}}})
    assert labelled.returncode == 0, labelled.stderr
    # Any spec change changes the pods the operator creates.
    refused(patch_as(cluster, install, "alice", name, {"spec": {"replicas": 2}}),
            "spec:", "'create' on pods")  # fmt: skip
    # bob may create pods: a new agent image is fine, the Secret reference is unchanged ...
    image = patch_as(cluster, install, "bob", name, {"spec": {"image": "example.com/a:2"}})
    assert image.returncode == 0, image.stderr
    # ... but redirecting the credential (a new base URL) needs the Secret again.
    redirect = {"spec": {"modelProvider": {"type": "custom", "baseUrl": "https://evil.test"}}}
    refused(patch_as(cluster, install, "bob", name, redirect),
            "spec.modelProvider.credentialsSecretRef", f"'get' on secrets/{SECRET}")  # fmt: skip
    assert patch_as(cluster, install, "carol", name, redirect).returncode == 0
    # A custom sidecar image would receive that credential: its own permission.
    sidecar = {"spec": {"sidecar": {"image": CUSTOM_SIDECAR}}}
    refused(patch_as(cluster, install, "carol", name, sidecar), "spec.sidecar.image")
    assert patch_as(cluster, install, "dave", name, sidecar).returncode == 0
    # Once set by dave, carol's unrelated change does not re-check the sidecar image.
    again = patch_as(cluster, install, "carol", name, {"spec": {"replicas": 3}})
    assert again.returncode == 0, again.stderr


# ---- what the policy never blocks --------------------------------------------------------------


def test_status_writes_are_not_matched_by_the_policy(
    cluster: Any, install: Install, tmp_path: Path
) -> None:
    """The shipped policy's match rules, under a probe policy that refuses everything it
    matches: a main-resource write is refused, a status write is not even seen."""
    helm = Helm(helm_path(), Path(cluster.kubeconfig), tmp_path / "helm")
    rendered = helm.template("--set", f"watchNamespaces={{{install.agents}}}",
                             "--show-only", "templates/admissionpolicy.yaml")  # fmt: skip
    policy = next(obj for obj in rendered if obj["kind"] == "ValidatingAdmissionPolicy")
    binding = next(obj for obj in rendered if obj["kind"] == "ValidatingAdmissionPolicyBinding")
    probe_name = unique("probe")
    probe = {
        "apiVersion": policy["apiVersion"],
        "kind": policy["kind"],
        "metadata": {"name": probe_name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": policy["spec"]["matchConstraints"],
            "validations": [{"expression": "false", "message": "probe refuses"}],
        },
    }
    probe_binding = {"apiVersion": binding["apiVersion"], "kind": binding["kind"],
                     "metadata": {"name": probe_name},
                     "spec": {"policyName": probe_name, "validationActions": ["Deny"],
                              "matchResources": binding["spec"]["matchResources"]}}  # fmt: skip
    name = "status-probe"
    assert create_as(cluster, install, "carol", agent_manifest(name)).returncode == 0
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([probe, probe_binding]))
    attempt = itertools.count()

    def label_refused() -> bool:
        label = {"metadata": {"labels": {"probe": str(next(attempt))}}}
        return "probe refuses" in patch_as(cluster, install, "carol", name, label).stderr

    try:
        wait_for(label_refused, "the probe policy to refuse a main-resource patch")
        status = {"status": {"observedGeneration": 1}}
        result = patch_as(cluster, install, "alice", name, status, "--subresource=status")
        assert result.returncode == 0, result.stderr
        got = cluster.kubectl("get", "governedagent", name, "-n", install.agents,
                              "-o", "jsonpath={.status.observedGeneration}").stdout  # fmt: skip
        assert got == "1"
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                        probe_name, "--ignore-not-found")  # fmt: skip
        # Gone once the API server's informer has seen it: the next tests share the namespace.
        wait_for(lambda: not label_refused(), "the probe policy to be gone")


def test_the_operators_service_account_is_exempt(cluster: Any, install: Install) -> None:
    name = "operator-edit"
    assert create_as(cluster, install, "carol", agent_manifest(name)).returncode == 0
    patch = {"spec": {"sidecar": {"image": CUSTOM_SIDECAR}, "replicas": 2}}
    # The chart's operator RBAC allows patching GovernedAgents but neither pods nor the
    # sidecarimage subresource: only the exemption lets this through.
    assert patch_as(cluster, install, install.operator_user, name, patch).returncode == 0
    # Another ServiceAccount with the same rights in the same namespace is refused.
    other = f"system:serviceaccount:{install.release_ns}:not-the-operator"
    grant(cluster, install.agents, other, "not-the-operator", AUTHOR)
    scale = {"spec": {"replicas": 3}}
    refused(patch_as(cluster, install, other, name, scale), "'create' on pods")


def test_an_agent_reaches_ready_with_the_policy_installed(
    cluster: Any, install: Install, tmp_path: Path
) -> None:
    """The operator (the chart's ServiceAccount, the chart's RBAC) reconciles carol's agent
    and writes its status through the policy; nothing it does is refused."""
    kubeconfig = service_account_kubeconfig(
        cluster, install.release_ns, install.fullname, tmp_path / "sa.kubeconfig"
    )
    name = "ready-bot"
    assert create_as(cluster, install, "carol", agent_manifest(name)).returncode == 0
    log_path = tmp_path / "operator.log"
    port = free_port()
    # The ingest's certificate is kept where the chart keeps it (its Role names that Secret).
    argv = [sys.executable, "-m", "promethios.cli", "operator", f"--kubeconfig={kubeconfig}",
            f"--namespace={install.agents}", f"--ingest-port={port}",
            f"--ingest-metrics-port={free_port()}", f"--ingest-url=https://127.0.0.1:{port}",
            f"--tls-secret-namespace={install.release_ns}",
            f"--tls-secret={install.fullname}-ingest-tls", f"--tls-service={install.fullname}",
            "--liveness-port=0", "--resync-seconds=600"]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def ready() -> bool:
        out = cluster.kubectl("get", "governedagent", name, "-n", install.agents, "-o", "json")
        conditions = json.loads(out.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    try:
        wait_for(ready, "carol's agent to be Ready")
    except pytest.fail.Exception:
        print(log_path.read_text()[-4000:])
        raise
    finally:
        stop_process(process)
    log_text = log_path.read_text()
    assert DENIED not in log_text and "Forbidden" not in log_text, log_text[-4000:]
