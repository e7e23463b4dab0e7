"""The operator's NetworkPolicies: the quarantine's, and the egress lock's.

Quarantine: no ingress, and no egress but the way to the ingest API. Egress Locked: the
agent's pods may reach DNS, their gateway and the policy's allow list only; the gateway
admits the agent's pods only, and may reach DNS, the ingest API and the provider only.

NetworkPolicies add up (a connection is allowed if any policy selecting the pod allows
it), so while a locked agent is quarantined the lock's policies are removed and the
quarantine's covers the agent's and the gateway's pods alone.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from ..api.agent import Agent
from ..api.egress import EgressPolicy, EgressRule
from ..api.metadata import LABEL_COMPONENT, LABEL_COMPONENT_APP, LABEL_INSTANCE, LABEL_NAME
from ..api.sidecarconfig import SIDECAR_METRICS_PORT, SIDECAR_PROXY_PORT
from .gateway import GATEWAY_APP, gateway_labels, gateway_selector
from .meta import APP_NAME, ChildNames, Manifest, object_meta, selector_labels, stamp_applied_hash
from .sidecar import BuildSettings, IngestPeer

#: Cluster DNS as most distributions label it (CoreDNS keeps kube-dns's label).
DNS_POD_LABELS = {"k8s-app": "kube-dns"}
API_VERSION = "networking.k8s.io/v1"


def agent_policy_name(agent_name: str) -> str:
    """The NetworkPolicy locking the agent's pods (no agent's other policy ends like it)."""
    return f"{agent_name}-egress-agent"


def gateway_policy_name(agent_name: str) -> str:
    """The NetworkPolicy fencing the agent's gateway."""
    return f"{agent_name}-egress-gateway"


def _policy(agent: Agent, name: str, component: str, spec: dict[str, Any]) -> Manifest:
    manifest: Manifest = {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": object_meta(agent, name, component),
        "spec": spec,
    }
    return stamp_applied_hash(manifest)


def quarantine_selector(agent: Agent, with_gateway: bool) -> dict[str, Any]:
    """The agent's pods; with its gateway, the gateway's pods too."""
    if not with_gateway:
        return {"matchLabels": selector_labels(agent)}
    return {
        "matchLabels": {LABEL_INSTANCE: agent.name},
        "matchExpressions": [
            {"key": LABEL_NAME, "operator": "In", "values": [APP_NAME, GATEWAY_APP]}
        ],
    }


def build_network_policy(
    agent: Agent, settings: BuildSettings, with_gateway: bool = False
) -> Manifest:
    """Quarantine: no ingress, and no egress but the sidecar's way to the ingest API.

    The sidecar (or gateway) must still deliver the violations spooled before (and while)
    the pods stop — among them the one that caused the quarantine. A NetworkPolicy selects
    pods, not containers, so the agent can reach the ingest too; it holds no key there.
    """
    spec: dict[str, Any] = {
        "podSelector": quarantine_selector(agent, with_gateway),
        "policyTypes": ["Ingress", "Egress"],
    }
    peer = settings.ingest_peer
    if peer is not None:
        spec["egress"] = [_ingest_egress(peer), dns_egress()]
    return _policy(agent, ChildNames.of(agent.name).network_policy, "quarantine", spec)


def build_agent_egress_policy(agent: Agent, allowed: EgressPolicy | None) -> Manifest:
    """Egress Locked: the agent's pods reach DNS, their gateway's proxy, the allow list."""
    to_gateway = {
        "to": [{"podSelector": {"matchLabels": gateway_selector(agent)}}],
        "ports": [{"port": SIDECAR_PROXY_PORT, "protocol": "TCP"}],
    }
    rules = [allow_rule(rule) for rule in (allowed.allow if allowed else [])]
    spec = {
        "podSelector": {"matchLabels": selector_labels(agent)},
        "policyTypes": ["Egress"],
        "egress": [lock_dns_egress(), to_gateway, *rules],
    }
    return _policy(agent, agent_policy_name(agent.name), "egress-lock", spec)


def build_gateway_network_policy(
    agent: Agent, settings: BuildSettings, provider_url: str
) -> Manifest:
    """The gateway admits the agent's own pods to its proxy (anyone to its metrics, for
    probes and scrapes) and reaches DNS, the ingest API and the provider only."""
    from_agent = {
        "from": [{"podSelector": {"matchLabels": selector_labels(agent)}}],
        "ports": [{"port": SIDECAR_PROXY_PORT, "protocol": "TCP"}],
    }
    metrics = {"ports": [{"port": SIDECAR_METRICS_PORT, "protocol": "TCP"}]}
    peer = settings.ingest_peer
    ingest = (
        _ingest_egress(peer) if peer is not None else url_egress(settings.ingest_url_for(agent))
    )
    spec = {
        "podSelector": {"matchLabels": gateway_selector(agent)},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [from_agent, metrics],
        "egress": [lock_dns_egress(), ingest, url_egress(provider_url)],
    }
    manifest = _policy(agent, gateway_policy_name(agent.name), "egress-lock", spec)
    manifest["metadata"]["labels"] = {**gateway_labels(agent), **_component("egress-lock")}
    return stamp_applied_hash(manifest)


def _component(component: str) -> dict[str, str]:
    return {LABEL_COMPONENT: component, LABEL_COMPONENT_APP: component}


def allow_rule(rule: EgressRule) -> dict[str, Any]:
    """One entry of ``spec.egress.allow`` as a NetworkPolicy egress rule."""
    peer: dict[str, Any]
    if rule.cidr is not None:
        peer = {"ipBlock": {"cidr": rule.cidr}}
    else:
        peer = {}
        if rule.pod_selector is not None:
            peer["podSelector"] = {"matchLabels": dict(rule.pod_selector.match_labels)}
        if rule.namespace_selector is not None:
            peer["namespaceSelector"] = {"matchLabels": dict(rule.namespace_selector.match_labels)}
    out: dict[str, Any] = {"to": [peer]}
    if rule.ports:
        out["ports"] = [{"port": p.port, "protocol": str(p.protocol)} for p in rule.ports]
    return out


def url_egress(url: str) -> dict[str, Any]:
    """Egress to a URL's host and port. NetworkPolicies know no host names: a host given by
    name (a provider's public API, a Service name) is any address on the URL's port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    rule: dict[str, Any] = {"ports": [{"port": port, "protocol": "TCP"}]}
    try:
        address = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return rule
    rule["to"] = [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]
    return rule


def _ingest_egress(peer: IngestPeer) -> dict[str, Any]:
    if peer.cidr is not None:
        destination: dict[str, Any] = {"ipBlock": {"cidr": peer.cidr}}
    else:
        destination = {"podSelector": {"matchLabels": dict(peer.pod_labels)}}
        if peer.namespace is not None:
            destination["namespaceSelector"] = {
                "matchLabels": {"kubernetes.io/metadata.name": peer.namespace}
            }
    return {"to": [destination], "ports": [{"port": peer.port, "protocol": "TCP"}]}


def lock_dns_egress() -> dict[str, Any]:
    """DNS for a locked pod: port 53 at any address. Cluster DNS is not always a pod with
    the kube-dns label (node-local caches, a resolver on the node as in the local cluster),
    and a NetworkPolicy sees the address a Service resolves to; a pod that may query the
    cluster's resolver has that channel anyway (the resolver forwards)."""
    return {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def dns_egress() -> dict[str, Any]:
    """Names (the ingest's, the gateway's, the provider's) resolve through cluster DNS."""
    return {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": dict(DNS_POD_LABELS)}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }
