"""The operator-level AlertSink allowlist: how it is read, and that it reaches the delivery
both through ``promethios ingest`` and through the operator's in-process ingest API."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from ingest_fakes import MemorySink

from promethios.api.alertsink import allowed_cidr
from promethios.composition import ingest_settings
from promethios.controller.options import parse_options
from promethios.ingest.destinations import LOOPBACK, PLAIN_HTTP, DestinationPolicy
from promethios.ingest.main import parse_args
from promethios.ingest.service import IngestService


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("10.96.0.0/12", "10.96.0.0/12"),
        ("127.0.0.1", "127.0.0.1/32"),
        (" 192.168.4.0/24 ", "192.168.4.0/24"),
        ("fd00::/8", "fd00::/8"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),  # IPv4-mapped: the IPv4 network it is
    ],
)
def test_allowlist_entries(text: str, network: str) -> None:
    assert allowed_cidr(text) == ip_network(network)


@pytest.mark.parametrize("text", ["10.0.0.1/8", "10.0.0.0/33", "cluster", "", "10.0.0.0/8/8"])
def test_bad_allowlist_entries_are_refused_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="is not a CIDR"):
        allowed_cidr(text)


def test_promethios_ingest_takes_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    settings = parse_args(
        [
            "--plain-http",
            "--alert-sink-allow-cidr=127.0.0.1/32",
            "--alert-sink-allow-cidr",
            "10.96.0.0/12",
        ]
    )
    assert settings.alert_sink_allowed_cidrs == (
        ip_network("127.0.0.1/32"),
        ip_network("10.96.0.0/12"),
    )
    assert parse_args(["--plain-http"]).alert_sink_allowed_cidrs == ()
    with pytest.raises(SystemExit):
        parse_args(["--plain-http", "--alert-sink-allow-cidr=10.0.0.1/8"])
    assert "--alert-sink-allow-cidr: '10.0.0.1/8' is not a CIDR" in capsys.readouterr().err


def test_the_operator_passes_the_flag_to_its_in_process_ingest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = parse_options(["--alert-sink-allow-cidr=127.0.0.1/32"])
    assert ingest_settings(options).alert_sink_allowed_cidrs == (ip_network("127.0.0.1/32"),)
    assert ingest_settings(parse_options([])).alert_sink_allowed_cidrs == ()
    with pytest.raises(SystemExit):
        parse_options(["--alert-sink-allow-cidr=somewhere"])
    assert "--alert-sink-allow-cidr: 'somewhere' is not a CIDR" in capsys.readouterr().err


async def test_the_service_delivers_under_the_configured_policy() -> None:
    settings = ingest_settings(parse_options(["--alert-sink-allow-cidr=127.0.0.1/32"]))
    service = IngestService(settings, MemorySink())
    try:
        assert service.alerts.policy == DestinationPolicy((ip_network("127.0.0.1/32"),))
        assert service.alerts.policy.url_refusal("http://127.0.0.1:8080/hook") is None
        assert service.alerts.policy.url_refusal("http://127.0.0.2:8080/hook") == PLAIN_HTTP
        assert service.alerts.policy.url_refusal("https://127.0.0.2/") == LOOPBACK
    finally:
        await service.stop()
