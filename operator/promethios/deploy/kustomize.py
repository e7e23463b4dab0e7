"""``promethios package``: a ready-to-commit GitOps bundle (kustomize) for one agent.

Layout::

    <name>/
      README.md                      how to fill the Secrets and reach Ready in each environment
      INTEGRATION.md                 the agent's integration instructions (same templates)
      .gitignore                     filled Secrets never get committed
      base/                          GovernancePolicy, AlertSink, GovernedAgent
        kustomization.yaml
        secrets.example.yaml         the Secrets the user fills (not a kustomize resource)
      overlays/<env>/                one per environment: its namespace and patches
        kustomization.yaml
        governedagent-patch.yaml, governancepolicy-patch.yaml, alertsink-patch.yaml

The default environments: ``dev`` (audit mode, alert only, loose rate limits and budget)
and ``prod`` (enforce, quarantine on breach, tight limits, rollback on breach). Every
object is validated against the API models before anything is written, so a bundle is
valid against the CRDs; ``kubectl kustomize overlays/<env>`` renders it. Pure: files in,
no I/O but :func:`write`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..api.agent import Agent
from ..api.alertsink import AlertSinkSpec
from ..api.common import API_VERSION
from ..api.governedagent import GovernedAgentSpec
from ..api.policy import GovernancePolicySpec
from ..api.rollout import Runtime
from .instructions import render
from .templating import render_template

KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
ENVIRONMENT_LABEL = "promethios.ai/environment"
#: Patch file per kind, in every overlay.
PATCH_FILES = {
    "GovernedAgent": "governedagent-patch.yaml",
    "GovernancePolicy": "governancepolicy-patch.yaml",
    "AlertSink": "alertsink-patch.yaml",
}


@dataclass(frozen=True)
class SecretToFill:
    """A Secret the bundle refers to and the user creates in each namespace."""

    name: str
    key: str
    what: str


@dataclass(frozen=True)
class Environment:
    """One overlay: its namespace and what it changes in the base (camelCase specs)."""

    name: str
    namespace: str
    patches: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        """What the overlay changes, in a few words (for the README)."""
        agent = self.patches.get("GovernedAgent") or {}
        governance = agent.get("governance") or {}
        policy = self.patches.get("GovernancePolicy") or {}
        parts = []
        if governance:
            parts.append(f"mode {governance.get('mode')}, on breach {governance.get('onBreach')}")
        if (agent.get("rollout") or {}).get("rollbackOnBreach"):
            parts.append("rollback on breach")
        if (limits := policy.get("rateLimits") or {}).get("requestsPerMinute"):
            parts.append(f"{limits['requestsPerMinute']} calls/min")
        if (budget := policy.get("budget") or {}).get("tokens"):
            parts.append(f"{budget['tokens']} tokens per {budget.get('windowSeconds', 86400)} s")
        return ", ".join(parts)


@dataclass(frozen=True)
class Bundle:
    """What a package holds: the base objects (specs, camelCase) and the environments."""

    name: str
    agent: dict[str, Any]
    policy_name: str
    policy: dict[str, Any]
    sinks: dict[str, dict[str, Any]]
    secrets: tuple[SecretToFill, ...]
    environments: tuple[Environment, ...]


def default_environments(namespace: str, image: str, runtime: Runtime) -> tuple[Environment, ...]:
    """dev: audit, alert only, loose limits; prod: enforce, quarantine, tight limits and,
    for agents the operator runs, rollback on breach."""
    pod = runtime == Runtime.POD
    dev_agent: dict[str, Any] = {
        "image": image,
        "governance": {"mode": "audit", "onBreach": "Alert", "trustThreshold": 0.5},
    }
    prod_agent: dict[str, Any] = {
        "image": image,
        "governance": {"mode": "enforce", "onBreach": "Quarantine", "trustThreshold": 0.8},
    }
    if pod:
        dev_agent["replicas"] = 1
        prod_agent["replicas"] = 2
        prod_agent["rollout"] = {"rollbackOnBreach": True, "rollbackWindowSeconds": 1800}
    dev = Environment(
        "dev",
        f"{namespace}-dev",
        {
            "GovernedAgent": dev_agent,
            "GovernancePolicy": {
                "piiDetection": {"action": "report"},
                "rateLimits": {"requestsPerMinute": 600, "tokensPerMinute": 1_000_000},
                "budget": {"tokens": 50_000_000, "windowSeconds": 86400},
            },
            "AlertSink": {"minSeverity": "critical"},
        },
    )
    prod = Environment(
        "prod",
        f"{namespace}-prod",
        {
            "GovernedAgent": prod_agent,
            "GovernancePolicy": {
                "piiDetection": {"action": "redact"},
                "rateLimits": {"requestsPerMinute": 60, "tokensPerMinute": 100_000},
                "budget": {"tokens": 2_000_000, "windowSeconds": 86400},
            },
            "AlertSink": {"minSeverity": "high"},
        },
    )
    return (dev, prod)


def new_bundle(
    name: str,
    namespace: str,
    image: str,
    provider: str = "openai",
    base_url: str | None = None,
    models: tuple[str, ...] = (),
    port: int = 8080,
    runtime: Runtime = Runtime.POD,
) -> Bundle:
    """A bundle for a new agent, from the ``promethios package`` flags; ValueError (naming
    the flag) or pydantic's ValidationError (naming the field) for an invalid one."""
    if provider == "custom" and not base_url:
        raise ValueError("--base-url is required for provider custom (an OpenAI-compatible API)")
    provider_secret, alerts = f"{name}-provider", f"{name}-alerts"
    model_provider: dict[str, Any] = {
        "type": provider,
        "credentialsSecretRef": {"name": provider_secret, "key": "apiKey"},
    }
    if base_url:
        model_provider["baseUrl"] = base_url
    if models:
        model_provider["allowedModels"] = list(models)
    agent: dict[str, Any] = {"image": image, "port": port, "modelProvider": model_provider}
    agent["governance"] = {"policyRef": {"name": f"{name}-policy"}, "mode": "enforce"}
    agent["alertSinks"] = [{"name": alerts}]
    if runtime == Runtime.EXTERNAL:
        agent["runtime"] = runtime.value
    policy: dict[str, Any] = {
        "piiDetection": {"action": "redact"},
        "rateLimits": {"requestsPerMinute": 120, "tokensPerMinute": 200_000},
        "budget": {"tokens": 5_000_000, "windowSeconds": 86400},
    }
    sink = {"type": "webhook", "urlSecretRef": {"name": alerts, "key": "url"}}
    secrets = (
        SecretToFill(provider_secret, "apiKey", f"the {provider} API key (held by the sidecar)"),
        SecretToFill(alerts, "url", "the webhook URL violations are posted to"),
    )
    bundle = Bundle(
        name,
        agent,
        f"{name}-policy",
        policy,
        {alerts: sink},
        secrets,
        default_environments(namespace, image, runtime),
    )
    validate(bundle)
    return bundle


def bundle_from_cluster(
    agent_body: Mapping[str, Any],
    policy_spec: Mapping[str, Any] | None,
    sink_specs: Mapping[str, Mapping[str, Any]],
    namespace: str | None = None,
) -> Bundle:
    """A bundle whose base is a live agent's spec, policy and AlertSinks (status, identity
    and per-cluster state such as an acknowledged breach are left out)."""
    metadata, spec = agent_body["metadata"], copy.deepcopy(dict(agent_body.get("spec") or {}))
    spec.pop("apiKey", None)
    (spec.get("governance") or {}).pop("acknowledgedBreach", None)
    secrets: list[SecretToFill] = []
    ref = (spec.get("modelProvider") or {}).get("credentialsSecretRef")
    if ref:
        secrets.append(SecretToFill(ref["name"], ref.get("key", "apiKey"), "the provider key"))
    for sink_name, sink in sink_specs.items():
        for field_name in ("urlSecretRef", "signingSecretRef", "routingKeySecretRef"):
            if sink.get(field_name):
                key = sink[field_name]
                secrets.append(
                    SecretToFill(key["name"], key.get("key", "apiKey"), f"{sink_name} {field_name}")
                )
    runtime = Runtime(spec.get("runtime") or Runtime.POD.value)
    bundle = Bundle(
        str(metadata["name"]),
        spec,
        spec["governance"]["policyRef"]["name"],
        dict(policy_spec or {}),
        {name: dict(sink) for name, sink in sink_specs.items()},
        tuple(dict.fromkeys(secrets)),
        default_environments(namespace or str(metadata["namespace"]), spec["image"], runtime),
    )
    validate(bundle)
    return bundle


def merged(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch of ``patch`` onto ``base`` (what kustomize does for CRDs)."""
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(bundle: Bundle) -> None:
    """Every object of the base and of each environment validates against the API models
    (pydantic's ValidationError names the field otherwise)."""
    for environment in (None, *bundle.environments):
        patches = environment.patches if environment else {}
        GovernedAgentSpec.model_validate(merged(bundle.agent, patches.get("GovernedAgent", {})))
        GovernancePolicySpec.model_validate(
            merged(bundle.policy, patches.get("GovernancePolicy", {}))
        )
        for sink in bundle.sinks.values():
            AlertSinkSpec.model_validate(merged(sink, patches.get("AlertSink", {})))


def manifest(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """An object without a namespace (the overlay sets it)."""
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}


def dump(*documents: Mapping[str, Any]) -> str:
    """YAML documents, keys in the order written."""
    return yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False)


def files(bundle: Bundle) -> dict[str, str]:
    """Every file of the bundle, by path relative to its directory."""
    sink_names = list(bundle.sinks)
    resources = ["governancepolicy.yaml", "alertsink.yaml", "governedagent.yaml"]
    out = {
        "base/governancepolicy.yaml": dump(
            manifest("GovernancePolicy", bundle.policy_name, bundle.policy)
        ),
        "base/alertsink.yaml": dump(
            *(manifest("AlertSink", name, spec) for name, spec in bundle.sinks.items())
        ),
        "base/governedagent.yaml": dump(manifest("GovernedAgent", bundle.name, bundle.agent)),
        "base/secrets.example.yaml": secrets_example(bundle),
        ".gitignore": "# Filled-in Secrets never get committed.\n*.secret.yaml\n",
    }
    if not bundle.sinks:
        del out["base/alertsink.yaml"]
        resources.remove("alertsink.yaml")
    out["base/kustomization.yaml"] = dump(
        {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": resources}
    )
    for environment in bundle.environments:
        out.update(overlay(bundle, environment, sink_names))
    out["README.md"] = render_template("kustomize/README.md.j2", bundle=bundle)
    out["INTEGRATION.md"] = render(example_agent(bundle), example_policy(bundle))
    return out


def overlay(bundle: Bundle, environment: Environment, sink_names: list[str]) -> dict[str, str]:
    """One environment's kustomization and patches."""
    prefix = f"overlays/{environment.name}"
    names = {"GovernedAgent": [bundle.name], "GovernancePolicy": [bundle.policy_name]}
    names["AlertSink"] = sink_names
    out: dict[str, str] = {}
    patches = []
    for kind, patch in environment.patches.items():
        if not names[kind] or not patch:
            continue
        out[f"{prefix}/{PATCH_FILES[kind]}"] = dump(
            *(manifest(kind, name, patch) for name in names[kind])
        )
        patches.append({"path": PATCH_FILES[kind]})
    out[f"{prefix}/kustomization.yaml"] = dump(
        {
            "apiVersion": KUSTOMIZE_API,
            "kind": "Kustomization",
            "namespace": environment.namespace,
            "resources": ["../../base"],
            "labels": [{"pairs": {ENVIRONMENT_LABEL: environment.name}}],
            "patches": patches,
        }
    )
    return out


def secrets_example(bundle: Bundle) -> str:
    """The Secrets to create in each environment's namespace (placeholders only)."""
    documents = [
        f"# {secret.what}\n"
        + dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret.name},
                "stringData": {secret.key: "REPLACE_ME"},
            }
        )
        for secret in bundle.secrets
    ]
    header = (
        "# The Secrets this bundle refers to. Not a kustomize resource: create them in each\n"
        "# environment's namespace out of band (copy to <env>.secret.yaml, which .gitignore\n"
        "# keeps out of git, fill in and `kubectl apply -n <namespace> -f` it), or replace\n"
        "# them with a SealedSecret or ExternalSecret of the same name.\n"
    )
    return header + "---\n".join(documents)


def example_agent(bundle: Bundle) -> Agent:
    """The first environment's agent, for the bundled integration instructions (its uid,
    and so its governance identity, is assigned when it is created)."""
    first = bundle.environments[0] if bundle.environments else None
    patch = first.patches.get("GovernedAgent", {}) if first else {}
    namespace = first.namespace if first else "default"
    spec = GovernedAgentSpec.model_validate(merged(bundle.agent, patch))
    return Agent(name=bundle.name, namespace=namespace, uid="<uid>", spec=spec)


def example_policy(bundle: Bundle) -> GovernancePolicySpec:
    """The first environment's policy."""
    first = bundle.environments[0] if bundle.environments else None
    patch = first.patches.get("GovernancePolicy", {}) if first else {}
    return GovernancePolicySpec.model_validate(merged(bundle.policy, patch))
