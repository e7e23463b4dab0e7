"""Least-privilege RBAC for the real node's add-ons that run as host processes.

kube-proxy authenticates as ``system:kube-proxy`` (bound by the API server's bootstrap
policy) and the kubelet as ``system:node:<name>`` (the Node authorizer); CoreDNS and
kube-router get a ClusterRole each, bound to the user of their client certificate.
"""

from __future__ import annotations

from typing import Any

from ..pki import ClientIdentity

Manifest = dict[str, Any]

COREDNS_USER = "promethios:coredns"
KUBE_ROUTER_USER = "promethios:kube-router"
READ = ["get", "list", "watch"]

#: What each add-on reads: CoreDNS answers from Services, EndpointSlices, Namespaces and
#: Pods; kube-router's informers also cover Nodes, Endpoints and NetworkPolicies.
ADDON_RULES: dict[str, list[Manifest]] = {
    COREDNS_USER: [
        {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    ],
    KUBE_ROUTER_USER: [
        {
            "apiGroups": [""],
            "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
            "verbs": READ,
        },
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": READ},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ],
}


def node_identities(node_name: str) -> dict[str, ClientIdentity]:
    """Client identities (by kubeconfig name) the node's components authenticate as."""
    return {
        "kubelet": ClientIdentity(f"system:node:{node_name}", ("system:nodes",)),
        "kube-proxy": ClientIdentity("system:kube-proxy"),
        "coredns": ClientIdentity(COREDNS_USER),
        "kube-router": ClientIdentity(KUBE_ROUTER_USER),
        # The API server's client certificate for kubelet logs/exec/port-forward; the
        # kubelet's webhook authorizer asks the API server, which grants system:masters.
        "apiserver-kubelet-client": ClientIdentity(
            "kube-apiserver-kubelet-client", ("system:masters",)
        ),
    }


def addon_rbac() -> list[Manifest]:
    """ClusterRoles and ClusterRoleBindings for the add-on users above."""
    objects: list[Manifest] = []
    for user, rules in ADDON_RULES.items():
        name = user.replace(":", "-")
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": rules,
            }
        )
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            }
        )
    return objects
