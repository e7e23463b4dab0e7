"""The agent's Deployment (agent + governance sidecar) and Service.

The pod meets Pod Security ``restricted``. The provider credential and the ingest API
key are mounted into the sidecar only: the agent container has no volume mount of
them and no environment variable referring to them; it reaches the model provider
through the sidecar's proxy on localhost.
"""

from __future__ import annotations

from typing import Any

from ..api.agent import Agent
from ..api.apikey import DATA_KEY
from ..api.common import ProviderType
from ..api.governedagent import ResourceRequirements
from ..api.metadata import ANNOTATION_CONFIG_HASH
from ..api.sidecarconfig import (
    API_KEY_MOUNT,
    CONFIG_KEY,
    CONFIG_MOUNT,
    PROVIDER_CREDENTIAL_MOUNT,
    SIDECAR_METRICS_PORT,
    SIDECAR_PROXY_PORT,
    SPOOL_MOUNT,
)
from .meta import (
    ChildNames,
    Manifest,
    labels,
    object_meta,
    selector_labels,
    stamp_applied_hash,
)
from .sidecar import (
    API_KEY_FILE,
    CA_BUNDLE_KEY,
    PROVIDER_CREDENTIAL_FILE,
    BuildSettings,
)

AGENT_CONTAINER = "agent"
SIDECAR_CONTAINER = "governance-sidecar"
SIDECAR_UID = 65532  # "nonroot" in distroless-style images; the operator image uses it too
SECRET_FILE_MODE = 0o440  # owner root, group fsGroup: readable by the sidecar user only
LOCALHOST = "127.0.0.1"

VOLUME_CONFIG = "promethios-config"
VOLUME_API_KEY = "promethios-api-key"
VOLUME_PROVIDER = "promethios-provider-credential"
VOLUME_SPOOL = "promethios-spool"
VOLUME_TMP = "promethios-tmp"

#: Agent env the operator owns; a user env var of the same name is dropped.
ENV_AGENT_ID = "PROMETHIOS_AGENT_ID"
ENV_GOVERNANCE_ID = "PROMETHIOS_GOVERNANCE_ID"
ENV_REPORTING_URL = "PROMETHIOS_REPORTING_URL"
#: SDKs refuse to build a client without a key; the sidecar replaces it with the real one.
PLACEHOLDER_PROVIDER_KEY = "promethios-sidecar-holds-the-credential"

#: Time the agent container gets to stop before the (native) sidecar is told to: the
#: Kubernetes default grace period. The sidecar's drain comes after it.
AGENT_STOP_SECONDS = 30
#: Slack for the kubelet between the drain's end and the kill.
STOP_SLACK_SECONDS = 5

DEFAULT_SIDECAR_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "25m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


def proxy_url() -> str:
    """The sidecar's agent-facing listener, reachable only from inside the pod."""
    return f"http://{LOCALHOST}:{SIDECAR_PROXY_PORT}"


def provider_env(provider_type: str, governance_url: str | None = None) -> list[dict[str, str]]:
    """SDK environment pointing the agent's model client at its governance proxy (the
    sidecar's on localhost; with egress Locked, the gateway's Service).

    The OpenAI SDK's base URL includes ``/v1``; the Anthropic SDK appends ``/v1/...``
    itself, so its base URL is the bare origin.
    """
    base = governance_url or proxy_url()
    if provider_type == ProviderType.ANTHROPIC.value:
        return [
            {"name": "ANTHROPIC_BASE_URL", "value": base},
            {"name": "ANTHROPIC_API_KEY", "value": PLACEHOLDER_PROVIDER_KEY},
        ]
    return [
        {"name": "OPENAI_BASE_URL", "value": f"{base}/v1"},
        {"name": "OPENAI_API_KEY", "value": PLACEHOLDER_PROVIDER_KEY},
    ]


def agent_env(agent: Agent, governance_url: str | None = None) -> list[dict[str, str]]:
    """User env first (minus names the operator owns), then the operator's env."""
    owned = [
        {"name": ENV_AGENT_ID, "value": agent.agent_id},
        {"name": ENV_GOVERNANCE_ID, "value": agent.governance_identity},
        {"name": ENV_REPORTING_URL, "value": governance_url or proxy_url()},
        *provider_env(str(agent.spec.model_provider.type), governance_url),
    ]
    owned_names = {item["name"] for item in owned}
    # Duplicate names would break server-side apply (env is a list-map keyed by name).
    user: dict[str, dict[str, str]] = {}
    for var in agent.spec.env:
        if var.name not in owned_names:
            user[var.name] = {"name": var.name, "value": var.value}
    return [*user.values(), *owned]


def _resources(requirements: ResourceRequirements | None) -> dict[str, Any] | None:
    if requirements is None:
        return None
    return requirements.model_dump(mode="json", by_alias=True, exclude_none=True) or None


def container_security_context(read_only_root: bool) -> dict[str, Any]:
    """Restricted-profile container settings."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if read_only_root:
        context["readOnlyRootFilesystem"] = True
    return context


def agent_container(agent: Agent, governance_url: str | None = None) -> dict[str, Any]:
    """The user's agent: no secret mounts, no secret env; model calls go to the sidecar
    (or, given ``governance_url``, to the agent's gateway)."""
    spec = agent.spec
    container: dict[str, Any] = {
        "name": AGENT_CONTAINER,
        "image": spec.image,
        "env": agent_env(agent, governance_url),
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "securityContext": container_security_context(read_only_root=False),
    }
    optional = {
        "imagePullPolicy": spec.image_pull_policy,
        "command": spec.command,
        "args": spec.args,
        "resources": _resources(spec.resources),
    }
    container.update({key: value for key, value in optional.items() if value is not None})
    return container


def sidecar_probes() -> dict[str, Any]:
    """Probes on the sidecar's metrics listener (the proxy listens on localhost only).

    As a native sidecar, a passing startup probe is what lets the agent container
    start, so the agent never calls a proxy that is not listening yet. Readiness
    fails while the sidecar has no ingest API key.
    """

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "metrics"},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 2,
        }

    return {
        "startupProbe": probe("/healthz", 1, 60),
        "livenessProbe": probe("/healthz", 10, 3),
        "readinessProbe": probe("/readyz", 5, 2),
    }


def sidecar_container(agent: Agent, settings: BuildSettings) -> dict[str, Any]:
    """The governance sidecar: holds both credentials, serves the proxy on localhost."""
    mounts = [
        {"name": VOLUME_CONFIG, "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": VOLUME_API_KEY, "mountPath": API_KEY_MOUNT, "readOnly": True},
        {"name": VOLUME_SPOOL, "mountPath": SPOOL_MOUNT},
        {"name": VOLUME_TMP, "mountPath": "/tmp"},
    ]
    if agent.spec.model_provider.credentials_secret_ref is not None:
        mounts.append(
            {"name": VOLUME_PROVIDER, "mountPath": PROVIDER_CREDENTIAL_MOUNT, "readOnly": True}
        )
    security = container_security_context(read_only_root=True)
    security.update({"runAsUser": SIDECAR_UID, "runAsGroup": SIDECAR_UID})
    container: dict[str, Any] = {
        "name": SIDECAR_CONTAINER,
        "image": agent.spec.sidecar.image or settings.sidecar_image,
        "command": ["promethios", "sidecar", "--config", f"{CONFIG_MOUNT}/{CONFIG_KEY}"],
        "ports": [
            {"name": "proxy", "containerPort": SIDECAR_PROXY_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": SIDECAR_METRICS_PORT, "protocol": "TCP"},
        ],
        "volumeMounts": mounts,
        "resources": _resources(agent.spec.sidecar.resources) or DEFAULT_SIDECAR_RESOURCES,
        "securityContext": security,
        **sidecar_probes(),
    }
    if settings.native_sidecar:
        # A restartable init container starts before the agent and stops after it.
        container["restartPolicy"] = "Always"
    return container


def pod_volumes(agent: Agent, settings: BuildSettings) -> list[dict[str, Any]]:
    """Volumes; ``items`` projects only the needed keys of each Secret and ConfigMap (the
    ingest API's CA bundle lands next to config.json, where ``ingest.caFile`` points)."""
    names = ChildNames.of(agent.name)
    config_items = [{"key": CONFIG_KEY, "path": CONFIG_KEY}]
    if settings.ca_bundle:
        config_items.append({"key": CA_BUNDLE_KEY, "path": CA_BUNDLE_KEY})
    volumes: list[dict[str, Any]] = [
        {
            "name": VOLUME_CONFIG,
            "configMap": {"name": names.config_map, "items": config_items},
        },
        {
            "name": VOLUME_API_KEY,
            "secret": {
                "secretName": names.secret,
                "items": [{"key": DATA_KEY, "path": API_KEY_FILE}],
                "defaultMode": SECRET_FILE_MODE,
            },
        },
        {"name": VOLUME_SPOOL, "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": VOLUME_TMP, "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    ref = agent.spec.model_provider.credentials_secret_ref
    if ref is not None:
        volumes.append(
            {
                "name": VOLUME_PROVIDER,
                "secret": {
                    "secretName": ref.name,
                    "items": [{"key": ref.key, "path": PROVIDER_CREDENTIAL_FILE}],
                    "defaultMode": SECRET_FILE_MODE,
                },
            }
        )
    return volumes


def pod_spec(
    agent: Agent, settings: BuildSettings, governance_url: str | None = None
) -> dict[str, Any]:
    """The pod: restricted security context, agent + sidecar, no token unless asked.

    With ``governance_url`` (egress Locked) the pod has no sidecar and no secret volume:
    its governance is the gateway at that URL (:mod:`.gateway`).
    """
    if governance_url is not None:
        return _placed(agent, _locked_pod_spec(agent, governance_url))
    sidecar = sidecar_container(agent, settings)
    spec: dict[str, Any] = {
        "automountServiceAccountToken": agent.spec.automount_service_account_token,
        # A rollout, scale-down, suspend or eviction leaves the sidecar time to deliver what
        # it holds (it drains on SIGTERM and reports what it could not, see losses.py).
        "terminationGracePeriodSeconds": (
            AGENT_STOP_SECONDS + agent.spec.sidecar.drain_seconds + STOP_SLACK_SECONDS
        ),
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            # Group of the mounted secret files, so the non-root sidecar can read them.
            "fsGroup": SIDECAR_UID,
        },
        "containers": [agent_container(agent)],
        "volumes": pod_volumes(agent, settings),
    }
    if settings.native_sidecar:
        spec["initContainers"] = [sidecar]
    else:
        spec["containers"].append(sidecar)
    return _placed(agent, spec)


def _locked_pod_spec(agent: Agent, governance_url: str) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": agent.spec.automount_service_account_token,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [agent_container(agent, governance_url)],
    }


def _placed(agent: Agent, spec: dict[str, Any]) -> dict[str, Any]:
    """Service account, node selector and tolerations, whatever the pod runs."""
    if agent.spec.service_account_name:
        spec["serviceAccountName"] = agent.spec.service_account_name
    if agent.spec.node_selector:
        spec["nodeSelector"] = dict(agent.spec.node_selector)
    if agent.spec.tolerations:
        spec["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True)
            for t in agent.spec.tolerations
        ]
    return spec


def build_deployment(
    agent: Agent,
    settings: BuildSettings,
    config_digest: str,
    replicas: int | None,
    governance_url: str | None = None,
) -> Manifest:
    """The Deployment; ``replicas=None`` leaves the field out so an autoscaler may own it.
    ``governance_url``: egress Locked, the pods call the gateway there (no sidecar)."""
    names = ChildNames.of(agent.name)
    pod_labels = {**agent.spec.pod_labels, **labels(agent, AGENT_CONTAINER)}
    pod_annotations = {**agent.spec.pod_annotations, ANNOTATION_CONFIG_HASH: config_digest}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(agent)},
        "template": {
            "metadata": {"labels": pod_labels, "annotations": pod_annotations},
            "spec": pod_spec(agent, settings, governance_url),
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    manifest: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(agent, names.deployment, AGENT_CONTAINER),
        "spec": spec,
    }
    return stamp_applied_hash(manifest)


def build_service(agent: Agent, sidecar: bool = True) -> Manifest:
    """ClusterIP Service: the agent's port and the sidecar's metrics port (``sidecar=False``:
    egress Locked, the pods have no sidecar, the gateway's Service has its metrics)."""
    ports = [{"name": "http", "port": agent.spec.port, "targetPort": "http", "protocol": "TCP"}]
    if sidecar:
        ports.append(
            {
                "name": "metrics",
                "port": SIDECAR_METRICS_PORT,
                "targetPort": "metrics",
                "protocol": "TCP",
            }
        )
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(agent, ChildNames.of(agent.name).service, AGENT_CONTAINER),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(agent),
            "ports": ports,
        },
    }
    return stamp_applied_hash(manifest)
