"""The operator's ``--tls-*`` flags and how the composition root hands them to the ingest."""

from __future__ import annotations

import pytest

from promethios.builders.tls import ServingMaterial, TlsMode
from promethios.composition import in_process_ingest
from promethios.controller.options import parse_options


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit):
        parse_options(argv)
    return capsys.readouterr().err


def test_auto_is_the_default_with_an_https_url() -> None:
    options = parse_options([])
    assert options.tls.mode == TlsMode.AUTO
    assert options.ingest_url == "https://promethios-operator.promethios-system.svc:8443"
    assert options.ingest_metrics_port == 9090
    identity = options.tls.identity(options.ingest_url)
    assert identity.dns_names == (
        "promethios-operator.promethios-system.svc",
        "promethios-operator.promethios-system.svc.cluster.local",
    )


def test_off_defaults_to_http_and_refuses_an_https_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_options(["--tls-mode=off"]).ingest_url.startswith("http://promethios-operator")
    assert "must start with http://" in refused(
        capsys, "--tls-mode=off", "--ingest-url=https://x:1"
    )
    assert "must start with https:// when --tls-mode=auto" in refused(
        capsys, "--ingest-url=http://127.0.0.1:8443"
    )


def test_the_url_host_and_extra_names_join_the_certificate() -> None:
    options = parse_options(
        [
            "--ingest-url=https://127.0.0.1:9443",
            "--tls-extra-san=ingest.example.com",
            "--tls-service=gov",
            "--tls-secret-namespace=ops",
        ]
    )
    identity = options.tls.identity(options.ingest_url)
    assert identity.dns_names == ("gov.ops.svc", "gov.ops.svc.cluster.local", "ingest.example.com")
    assert identity.ip_addresses == ("127.0.0.1",)


def test_files_mode_needs_its_files_and_only_it_takes_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "needs --tls-cert-file and --tls-key-file" in refused(capsys, "--tls-mode=files")
    assert "--tls-ca-file need --tls-mode=files (not auto)" in refused(
        capsys, "--tls-ca-file=/ca.crt"
    )
    # With a standalone ingest the operator only publishes the CA bundle.
    options = parse_options(["--tls-mode=files", "--no-ingest", "--tls-ca-file=/ca.crt"])
    assert options.tls.ca_file == "/ca.crt"


def test_ports_must_differ(capsys: pytest.CaptureFixture[str]) -> None:
    assert "must differ" in refused(capsys, "--ingest-metrics-port=8080")
    assert "must differ" in refused(capsys, "--ingest-port=9090")


def test_the_in_process_ingest_gets_the_certificate_of_its_mode() -> None:
    auto = in_process_ingest(parse_options([]))
    assert auto.tls is not None and not auto.tls.loaded
    assert auto.settings.tls_cert_file is None
    files = in_process_ingest(
        parse_options(["--tls-mode=files", "--tls-cert-file=/c", "--tls-key-file=/k"])
    )
    assert files.tls is None
    assert (files.settings.tls_cert_file, files.settings.tls_key_file) == ("/c", "/k")
    off = in_process_ingest(parse_options(["--tls-mode=off"]))
    assert off.tls is None and off.settings.tls_cert_file is None
    # A CA-bundle-only material (files mode) is nothing to serve.
    auto.serve_certificate(ServingMaterial(b"", b"", b"ca"))
    assert not auto.tls.loaded
