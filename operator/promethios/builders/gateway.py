"""The governance gateway of an agent whose egress is ``Locked``: a Deployment and a
Service running the sidecar image in gateway mode, outside the agent's pods.

A NetworkPolicy selects pods, not containers: a sidecar allowed out would let the agent
out too. So with egress Locked the proxy moves into its own pods, one gateway per agent.
It is the sidecar, unchanged in its duties (policy, spool, reporting), with the same
ConfigMap, API-key Secret and provider credential the sidecar would mount; what makes it
a gateway is ``listenHost: 0.0.0.0`` in its config (the sidecar listens on localhost
only), and the NetworkPolicies of :mod:`.network`, which admit only the agent's pods.

The agent's identity is the gateway's: the gateway holds one agent's ingest API key and
reports as that agent only, and its ingress admits that agent's pods only. Another agent
reaches neither its proxy (NetworkPolicy) nor its key (never in any pod but the gateway).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from ..api.agent import Agent
from ..api.egress import EgressMode
from ..api.metadata import ANNOTATION_CONFIG_HASH, LABEL_INSTANCE, LABEL_NAME
from ..api.sidecarconfig import SIDECAR_METRICS_PORT, SIDECAR_PROXY_PORT, SidecarConfig
from .meta import Manifest, labels, object_meta, stamp_applied_hash
from .sidecar import BuildSettings
from .workload import (
    SIDECAR_UID,
    STOP_SLACK_SECONDS,
    pod_volumes,
    sidecar_container,
)

#: ``app.kubernetes.io/name`` of gateway pods: not the agent's, so that the agent's
#: Deployment, Service and NetworkPolicies never select them.
GATEWAY_APP = "promethios-gateway"
COMPONENT = "gateway"
#: The gateway listens on every interface of its own pod (its NetworkPolicy admits only
#: the agent's pods to the proxy port).
GATEWAY_LISTEN_HOST = "0.0.0.0"
GATEWAY_REPLICAS = 1
SUFFIX = "-gateway"
NAME_MAX = 63


def locked(agent: Agent) -> bool:
    """Whether the agent's egress is Locked (its governance runs in a gateway)."""
    return agent.spec.governance.egress == EgressMode.LOCKED


def gateway_name(agent_name: str) -> str:
    """``<agent>-gateway``; a name too long for a Service is cut and given a hash."""
    name = f"{agent_name}{SUFFIX}"
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(agent_name.encode()).hexdigest()[:8]
    keep = NAME_MAX - len(SUFFIX) - len(digest) - 1
    return f"{agent_name[:keep].rstrip('-')}-{digest}{SUFFIX}"


def gateway_selector(agent: Agent) -> dict[str, str]:
    """Labels selecting the agent's gateway pods (and only them)."""
    return {LABEL_NAME: GATEWAY_APP, LABEL_INSTANCE: agent.name}


def gateway_labels(agent: Agent) -> dict[str, str]:
    """The operator's labels for the gateway's objects, the gateway's selector winning."""
    return {**labels(agent, COMPONENT), **gateway_selector(agent)}


def gateway_url(agent: Agent) -> str:
    """The gateway's proxy as the agent's pods reach it (its Service, by DNS)."""
    return f"http://{gateway_name(agent.name)}.{agent.namespace}.svc:{SIDECAR_PROXY_PORT}"


def gateway_config(config: SidecarConfig) -> SidecarConfig:
    """The sidecar's config in gateway mode: the proxy listens beyond localhost."""
    return config.model_copy(update={"listen_host": GATEWAY_LISTEN_HOST})


def gateway_replicas(replicas: int | None) -> int:
    """One gateway pod while the agent may run; none while it is scaled to zero."""
    return 0 if replicas == 0 else GATEWAY_REPLICAS


def _meta(agent: Agent) -> dict[str, Any]:
    meta = object_meta(agent, gateway_name(agent.name), COMPONENT)
    meta["labels"] = gateway_labels(agent)
    return meta


def gateway_pod_spec(agent: Agent, settings: BuildSettings) -> dict[str, Any]:
    """The sidecar container as the pod's only container, with the sidecar's volumes."""
    plain = dataclasses.replace(settings, native_sidecar=False)
    return {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": agent.spec.sidecar.drain_seconds + STOP_SLACK_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "fsGroup": SIDECAR_UID,
        },
        "containers": [sidecar_container(agent, plain)],
        "volumes": pod_volumes(agent, settings),
    }


def build_gateway_deployment(
    agent: Agent, settings: BuildSettings, config_digest: str, replicas: int | None
) -> Manifest:
    """The gateway's Deployment (``replicas``: the agent's, see :func:`gateway_replicas`)."""
    pod_labels = gateway_labels(agent)
    manifest: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(agent),
        "spec": {
            "replicas": gateway_replicas(replicas),
            "selector": {"matchLabels": gateway_selector(agent)},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {ANNOTATION_CONFIG_HASH: config_digest},
                },
                "spec": gateway_pod_spec(agent, settings),
            },
        },
    }
    return stamp_applied_hash(manifest)


def build_gateway_service(agent: Agent) -> Manifest:
    """ClusterIP Service: the proxy (the agent's model calls and reports) and metrics."""
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(agent),
        "spec": {
            "type": "ClusterIP",
            "selector": gateway_selector(agent),
            "ports": [
                {"name": "proxy", "port": SIDECAR_PROXY_PORT, "targetPort": "proxy"},
                {"name": "metrics", "port": SIDECAR_METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }
    for port in manifest["spec"]["ports"]:
        port["protocol"] = "TCP"
    return stamp_applied_hash(manifest)
