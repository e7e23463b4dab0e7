"""The operator's command line: where the quarantine NetworkPolicy lets a sidecar reach."""

from __future__ import annotations

import pytest

from promethios.builders.sidecar import IngestPeer
from promethios.controller.options import ingest_peer, parse_options


def test_ingest_pods_name_a_namespace_and_a_selector() -> None:
    options = parse_options(
        ["--ingest-pods=promethios-system/app.kubernetes.io/name=op,app.kubernetes.io/instance=r",
         "--ingest-pod-port=9443"]
    )  # fmt: skip
    assert options.ingest_peer == IngestPeer(
        namespace="promethios-system",
        pod_labels={"app.kubernetes.io/name": "op", "app.kubernetes.io/instance": "r"},
        port=9443,
    )


def test_an_address_range_wins_and_nothing_means_deny_all() -> None:
    assert ingest_peer("ns/a=b", "10.0.0.0/24", 8443) == IngestPeer(cidr="10.0.0.0/24")
    assert parse_options([]).ingest_peer is None


@pytest.mark.parametrize("value", ["no-slash", "ns/", "/a=b", "ns/no-equals"])
def test_a_malformed_selector_is_refused_naming_the_flag(value: str) -> None:
    with pytest.raises(SystemExit, match="--ingest-pods"):
        ingest_peer(value, None, 8443)
