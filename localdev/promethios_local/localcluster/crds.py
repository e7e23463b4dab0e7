"""Applying CRD manifests to a cluster and waiting until the API server serves them.

Every harness that starts a cluster of its own (the integration fixtures, the chaos run,
the request-counting tests, the operator benchmark) installs the project's committed
``crds/*.yaml`` the same way: server-side apply, then wait for Established and
NamesAccepted, so the first custom object created afterwards is never refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class Kubectl(Protocol):
    """A cluster that runs kubectl against itself (a LocalCluster, the kind session's)."""

    def kubectl(self, *args: str) -> Any:
        """Run ``kubectl *args`` against this cluster; raise when it fails."""


def install_crds(
    cluster: Kubectl, files: Sequence[Path], field_manager: str = "promethios-tests"
) -> list[str]:
    """Apply ``files`` (one CRD each, named ``<plural>.<group>.yaml``) server-side and wait
    until every CRD is Established with its names accepted; the CRD names."""
    names = [path.name.removesuffix(".yaml") for path in files]
    args = ["apply", "--server-side", "--force-conflicts", f"--field-manager={field_manager}"]
    for path in files:
        args += ["-f", str(path)]
    cluster.kubectl(*args)
    crds = [f"crd/{name}" for name in names]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
    cluster.kubectl("wait", "--for=condition=NamesAccepted", "--timeout=60s", *crds)
    return names
