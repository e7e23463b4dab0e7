"""Pure builders for the files and objects the launcher writes: kubeconfigs, fake
Node objects and kwok's configuration (its lifecycle ``Stage`` objects).

kwok ships no built-in stages when run standalone, so the launcher gives it five:

- ``node-initialize``: a managed Node that is not Ready becomes Ready (kubelet-like
  conditions, node info, phase Running); capacity and addresses set at creation stay.
- ``node-heartbeat``: Ready nodes refresh their conditions every ~20 s (kwok also renews
  the node Lease, which is what the node lifecycle controller watches).
- ``pod-ready``: a scheduled Pending pod gets running containers, IPs and Ready=True.
- ``pod-complete``: a running pod owned by a Job succeeds.
- ``pod-delete``: a pod being deleted is removed for good (what the kubelet would do).
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

from .pki import KeyPair

KWOK_ANNOTATION_KEY = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
KWOK_NODE_SELECTOR = f"{KWOK_ANNOTATION_KEY}={KWOK_ANNOTATION_VALUE}"
KWOK_NODE_LABEL = {"type": "kwok"}
NODE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110"}
READY_STATUS = '.status.conditions.[] | select( .type == "Ready" ) | .status'

Manifest = dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_kubeconfig(
    server: str, ca_pem: bytes, client: KeyPair, user: str, cluster_name: str = "promethios-local"
) -> Manifest:
    """A self-contained kubeconfig (certificates embedded) for one client identity."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert_pem),
                    "client-key-data": _b64(client.key_pem),
                },
            }
        ],
        "contexts": [
            {
                "name": cluster_name,
                "context": {"cluster": cluster_name, "user": user, "namespace": "default"},
            }
        ],
        "current-context": cluster_name,
        "preferences": {},
    }


def render_yaml(*documents: Manifest) -> str:
    """Serialise one or more documents as (multi-document) YAML."""
    return yaml.safe_dump_all(list(documents), sort_keys=False)


def node_name(index: int) -> str:
    """The name of the ``index``-th fake node."""
    return f"kwok-node-{index}"


def node_manifest(index: int) -> Manifest:
    """A fake Node that kwok manages: schedulable, untainted, 32 CPU / 256Gi / 110 pods."""
    name = node_name(index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_ANNOTATION_KEY: KWOK_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                **KWOK_NODE_LABEL,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {},
        "status": {
            "capacity": dict(NODE_CAPACITY),
            "allocatable": dict(NODE_CAPACITY),
            "addresses": [
                {"type": "InternalIP", "address": f"10.240.0.{index + 1}"},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def _stage(
    name: str, kind: str, expressions: list[Manifest], next_: Manifest, delay_ms: int | None = None
) -> Manifest:
    spec: Manifest = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": expressions},
        "next": next_,
    }
    if delay_ms is not None:
        spec["delay"] = {
            "durationMilliseconds": delay_ms,
            "jitterDurationMilliseconds": delay_ms + delay_ms // 4,
        }
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": spec,
    }


def _expr(key: str, operator: str, *values: str) -> Manifest:
    expression: Manifest = {"key": key, "operator": operator}
    if values:
        expression["values"] = list(values)
    return expression


NODE_CONDITIONS_TEMPLATE = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ .reason | Quote }}
  message: {{ .message | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
"""

NODE_INFO_TEMPLATE = """\
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  kubeProxyVersion: {{ printf "kwok-%s" Version | Quote }}
  containerRuntimeVersion: {{ printf "kwok://%s" Version | Quote }}
  kernelVersion: {{ printf "kwok-%s" Version | Quote }}
  osImage: kwok
  machineID: ""
  systemUUID: ""
  bootID: ""
phase: Running
"""

POD_READY_TEMPLATE = """\
{{ $now := Now }}
{{ $hostIP := NodeIPWith .spec.nodeName }}
{{ $podIP := PodIPWith .spec.nodeName (or .spec.hostNetwork false) .metadata.uid \
.metadata.name .metadata.namespace }}
conditions:
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  started: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, \
finishedAt: {{ $now | Quote }}}
{{ end }}
hostIP: {{ $hostIP | Quote }}
hostIPs: [{ip: {{ $hostIP | Quote }}}]
podIP: {{ $podIP | Quote }}
podIPs: [{ip: {{ $podIP | Quote }}}]
phase: Running
startTime: {{ $now | Quote }}
"""

POD_COMPLETE_TEMPLATE = """\
{{ $now := Now }}
conditions:
- {type: Ready, status: "False", reason: PodCompleted, lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "False", reason: PodCompleted, \
lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, \
finishedAt: {{ $now | Quote }}}
{{ end }}
phase: Succeeded
"""


def _go_template(text: str) -> str:
    """Join the backslash-continued lines (kept short for the linter) into one."""
    return text.replace("\\\n", "")


def kwok_stages() -> list[Manifest]:
    """The node and pod lifecycle stages described in the module docstring."""
    not_deleted = _expr(".metadata.deletionTimestamp", "DoesNotExist")
    return [
        _stage(
            "node-initialize",
            "Node",
            [_expr(READY_STATUS, "NotIn", "True")],
            {"statusTemplate": NODE_CONDITIONS_TEMPLATE + NODE_INFO_TEMPLATE},
        ),
        _stage(
            "node-heartbeat",
            "Node",
            [_expr(".status.phase", "In", "Running"), _expr(READY_STATUS, "In", "True")],
            {"statusTemplate": NODE_CONDITIONS_TEMPLATE},
            delay_ms=20_000,
        ),
        _stage(
            "pod-ready",
            "Pod",
            [
                not_deleted,
                _expr(".status.phase", "In", "Pending"),
                _expr(READY_STATUS, "NotIn", "True"),
            ],
            {"statusTemplate": _go_template(POD_READY_TEMPLATE)},
        ),
        _stage(
            "pod-complete",
            "Pod",
            [
                not_deleted,
                _expr(".status.phase", "In", "Running"),
                _expr(".metadata.ownerReferences.[].kind", "In", "Job"),
            ],
            {"statusTemplate": _go_template(POD_COMPLETE_TEMPLATE)},
        ),
        _stage(
            "pod-delete", "Pod", [_expr(".metadata.deletionTimestamp", "Exists")], {"delete": True}
        ),
    ]


def audit_policy() -> Manifest:
    """An API-server audit policy: every request at level Metadata (who, verb, object;
    no bodies), logged once it completes (the ``RequestReceived`` stage is omitted)."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata"}],
    }


def kwok_configuration() -> list[Manifest]:
    """kwok's ``--config`` documents: the lifecycle stages.

    No ``KwokConfiguration`` document: kwok v0.8 skips its defaults for one read from a
    file (e.g. lease parallelism 0 is then fatal), so options go on the command line.
    """
    return kwok_stages()
