"""The chart installs and runs the operator in a real pod, from the locally built image.

``helm install --wait`` (fixture ``operator_release``) only returns once the operator pod
is Ready: its readiness probe is the ingest API's /readyz, which answers once the operator
has listed agents and keys through the API server with its ServiceAccount (in-cluster
configuration through the ``kubernetes`` Service). Then ``helm test`` runs the chart's
test pod, which calls the ingest API through the Service the sidecars use.
"""

from __future__ import annotations

import datetime as dt

from e2e_helpers import (
    OPERATOR_IMAGE,
    OPERATOR_NAMESPACE,
    RELEASE,
    Helm,
    Kube,
    parse_time,
    pod_ready,
    wait_for,
)
from e2e_platform import Platform


def test_the_operator_runs_in_a_real_pod_and_its_probes_pass(
    kube: Kube, operator_release: str, platform: Platform
) -> None:
    pod = kube.get("pod", operator_release, OPERATOR_NAMESPACE)
    assert pod is not None
    assert pod["spec"]["nodeName"] == platform.node_name  # the real node, not a kwok one
    status = pod["status"]["containerStatuses"][0]
    assert platform.names_image(status["image"], OPERATOR_IMAGE), status["image"]
    assert status["imageID"]
    assert pod_ready(pod) and status["ready"] and status["started"]
    # Liveness (kopf's /healthz) keeps passing: no restart after two probe periods (20 s).
    probe = pod["spec"]["containers"][0]["livenessProbe"]
    assert probe["httpGet"]["path"] == "/healthz"
    started = status["state"]["running"]["startedAt"]
    wait_for(
        lambda: _running_longer_than(kube, operator_release, 2 * probe["periodSeconds"] + 5),
        "the operator to keep running through two liveness periods",
        timeout=90,
        interval=2,
    )
    again = kube.get("pod", operator_release, OPERATOR_NAMESPACE)
    assert again is not None
    final = again["status"]["containerStatuses"][0]
    assert final["restartCount"] == 0, final
    assert final["state"]["running"]["startedAt"] == started
    logs = kube.run("logs", "-n", OPERATOR_NAMESPACE, operator_release).stdout
    assert "Traceback" not in logs, logs[-3000:]


def _running_longer_than(kube: Kube, pod_name: str, seconds: float) -> bool:
    pod = kube.get("pod", pod_name, OPERATOR_NAMESPACE)
    assert pod is not None
    started = parse_time(pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"])
    return (dt.datetime.now(dt.UTC) - started).total_seconds() > seconds


def test_helm_test_passes_against_the_running_operator(helm: Helm, operator_release: str) -> None:
    # The test pod exits 0 only if GET /healthz through the Service answered 200; its
    # hook-delete-policy removes it once it succeeded, so its phase is what helm reports.
    output = helm("test", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--timeout", "120s")
    assert "TEST SUITE:     promethios-operator-test-ingest" in output, output
    assert "Phase:          Succeeded" in output, output
