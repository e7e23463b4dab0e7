"""Pure builders: typed specs in, Kubernetes manifests (plain dicts) out. No I/O.

- :mod:`.meta`      names, labels, owner references, manifest hashes
- :mod:`.apikey`    the API-key Secret and the key rotation state machine
- :mod:`.sidecar`   the sidecar's configuration and its ConfigMap
- :mod:`.images`    the allowlist of sidecar images an agent may name
- :mod:`.workload`  the agent's Deployment and Service
- :mod:`.gateway`   the governance gateway of an agent whose egress is Locked
- :mod:`.network`   the NetworkPolicies: quarantine and egress lock
- :mod:`.tls`       the ingest API's CA and serving certificate, their renewal, their Secret
"""

from .apikey import KeyState, build_api_key_secret, plan_api_key
from .meta import ChildNames, labels, owner_reference, selector_labels
from .network import build_network_policy
from .sidecar import (
    BuildSettings,
    build_config_map,
    build_sidecar_config,
    config_hash,
    default_base_url,
)
from .workload import build_deployment, build_service

__all__ = [
    "BuildSettings",
    "ChildNames",
    "KeyState",
    "build_api_key_secret",
    "build_config_map",
    "build_deployment",
    "build_network_policy",
    "build_service",
    "build_sidecar_config",
    "config_hash",
    "default_base_url",
    "labels",
    "owner_reference",
    "plan_api_key",
    "selector_labels",
]
