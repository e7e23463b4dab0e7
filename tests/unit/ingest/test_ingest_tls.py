"""The ingest API over TLS (real sockets on 127.0.0.1, no cluster): reports on HTTPS only,
metrics and probes on their own plain-HTTP port, the certificate rotated without a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ingest_fakes import AGENT, IDENTITY, KEY, MemorySink, agent_config, headers

from promethios.builders.tls import ServingIdentity, ServingMaterial, decide, issue
from promethios.ingest.keystore import KeyStore
from promethios.ingest.main import IngestRunner, parse_args, start_ingest
from promethios.ingest.settings import IngestSettings
from promethios.ingest.tls import ServingTls, TlsError

IDENTITY_127 = ServingIdentity.for_service("promethios-operator", "promethios-system",
                                           ("127.0.0.1",))  # fmt: skip
HEARTBEAT = {"agentId": AGENT, "status": "active", "uptime": 1,
             "lastActivity": "2024-05-01T10:00:00Z"}  # fmt: skip


def material() -> ServingMaterial:
    now = dt.datetime.now(dt.UTC)
    return issue(decide(None, IDENTITY_127, now), None, IDENTITY_127, now)


def write_pair(directory: Path, served: ServingMaterial, key_pem: bytes | None = None) -> None:
    """Replace tls.crt and tls.key the way the kubelet updates a Secret volume (renames)."""
    for name, data in (("tls.crt", served.cert_pem), ("tls.key", key_pem or served.key_pem)):
        tmp = directory / f".{name}.new"
        tmp.write_bytes(data)
        os.replace(tmp, directory / name)


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())


async def request(method: str, url: str, ca_pem: bytes | None = None, **kw: Any) -> int:
    connector = aiohttp.TCPConnector(ssl=client_context(ca_pem) if ca_pem else False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, url, timeout=aiohttp.ClientTimeout(total=5), **kw) as response,
    ):
        await response.read()
        return response.status


async def trusted_by(port: int, ca_pem: bytes) -> bool:
    """Whether the certificate served on ``port`` verifies against ``ca_pem``."""
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(ca_pem), server_hostname="127.0.0.1"
        )
    except ssl.SSLCertVerificationError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def eventually(check: Any, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, ServingMaterial]:
    served = material()
    write_pair(tmp_path, served)
    return tmp_path, served


@pytest.fixture
async def runner(files: tuple[Path, ServingMaterial]) -> AsyncIterator[IngestRunner]:
    directory, _ = files
    settings = IngestSettings(
        host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0,
        tls_cert_file=str(directory / "tls.crt"), tls_key_file=str(directory / "tls.key"),
        tls_reload_seconds=0.05,
    )  # fmt: skip
    started = await start_ingest(settings, status_sink=MemorySink(), keystore=KeyStore())
    started.service.keystore.add_key(KEY, AGENT, IDENTITY)
    started.service.upsert_agent(agent_config("team-a", "support-bot"))
    yield started
    await started.stop()


async def test_reports_over_https_verified_against_the_ca(
    runner: IngestRunner, files: tuple[Path, ServingMaterial]
) -> None:
    _, served = files
    assert runner.scheme == "https"
    url = f"https://127.0.0.1:{runner.port}/api/v1/agents/heartbeat"
    assert await request("POST", url, served.ca_bundle_pem, json=HEARTBEAT,
                         headers=headers()) == 202  # fmt: skip
    # A client trusting another CA refuses the server in the handshake.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await request("POST", url, material().ca_bundle_pem, json=HEARTBEAT, headers=headers())
    # Plain HTTP to the TLS port gets no HTTP answer at all.
    with pytest.raises(aiohttp.ClientError):
        await request("POST", f"http://127.0.0.1:{runner.port}/api/v1/agents/heartbeat",
                      json=HEARTBEAT, headers=headers())  # fmt: skip


async def test_metrics_and_probes_only_on_the_plain_metrics_port(
    runner: IngestRunner, files: tuple[Path, ServingMaterial]
) -> None:
    _, served = files
    metrics = f"http://127.0.0.1:{runner.metrics_port}"
    assert runner.metrics_port != runner.port
    for path in ("/metrics", "/healthz", "/readyz"):
        assert await request("GET", metrics + path) == 200, path
        assert await request("GET", f"https://127.0.0.1:{runner.port}{path}",
                             served.ca_bundle_pem) == 404, path  # fmt: skip
    assert await request("POST", metrics + "/api/v1/agents/heartbeat", json=HEARTBEAT,
                         headers=headers()) == 404  # fmt: skip


async def test_a_rotated_certificate_is_served_without_a_restart(
    runner: IngestRunner, files: tuple[Path, ServingMaterial], caplog: pytest.LogCaptureFixture
) -> None:
    directory, first = files
    second = material()
    assert await trusted_by(runner.port, first.ca_bundle_pem)
    assert not await trusted_by(runner.port, second.ca_bundle_pem)
    write_pair(directory, second)
    await eventually(lambda: trusted_by(runner.port, second.ca_bundle_pem), "the new certificate")
    assert not await trusted_by(runner.port, first.ca_bundle_pem)
    # A certificate and a key that do not belong together are refused; the served pair stays.
    caplog.set_level(logging.WARNING, logger="promethios.ingest.tls")
    write_pair(directory, material(), key_pem=second.key_pem)

    async def refused() -> bool:
        return "keeping the served certificate" in caplog.text

    await eventually(refused, "the mismatched pair to be refused")
    assert await trusted_by(runner.port, second.ca_bundle_pem)
    assert KEY not in caplog.text and "PRIVATE KEY" not in caplog.text


async def test_a_bad_pair_fails_the_start_naming_the_files(tmp_path: Path) -> None:
    one, other = material(), material()
    write_pair(tmp_path, one, key_pem=other.key_pem)
    settings = IngestSettings(host="127.0.0.1", port=0, metrics_port=0,
                              tls_cert_file=str(tmp_path / "tls.crt"),
                              tls_key_file=str(tmp_path / "tls.key"))  # fmt: skip
    with pytest.raises(TlsError, match=r"tls\.crt and .*tls\.key: not a usable"):
        await start_ingest(settings, status_sink=MemorySink(), keystore=KeyStore())
    missing = IngestSettings(port=0, metrics_port=0, tls_cert_file=str(tmp_path / "nope.crt"),
                             tls_key_file=str(tmp_path / "tls.key"))  # fmt: skip
    with pytest.raises(TlsError, match=r"cannot read .*nope\.crt"):
        await start_ingest(missing, status_sink=MemorySink(), keystore=KeyStore())
    with pytest.raises(TlsError, match="without a certificate"):
        await start_ingest(IngestSettings(port=0, metrics_port=0), status_sink=MemorySink(),
                           tls=ServingTls())  # fmt: skip


async def test_plain_http_only_when_nothing_is_given_and_it_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = IngestSettings(host="127.0.0.1", port=0, metrics_port=0)
    runner = await start_ingest(settings, status_sink=MemorySink(), keystore=KeyStore())
    try:
        assert runner.scheme == "http"
        assert "PLAIN HTTP" in caplog.text
        assert await request("GET", f"http://127.0.0.1:{runner.port}/openapi.json") == 200
    finally:
        await runner.stop()


def test_settings_and_command_line_refuse_half_a_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="tls_cert_file and tls_key_file go together"):
        IngestSettings(tls_cert_file="/x.crt")
    with pytest.raises(ValueError, match="metrics_port must differ from port"):
        IngestSettings(port=9000, metrics_port=9000)
    with pytest.raises(SystemExit):
        parse_args(["--tls-cert-file=/x.crt"])
    assert "give --tls-cert-file and --tls-key-file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--plain-http", "--tls-cert-file=/x", "--tls-key-file=/y"])
    assert "exclude each other" in capsys.readouterr().err
    settings = parse_args(["--tls-cert-file=/c", "--tls-key-file=/k", "--metrics-port=9191"])
    assert (settings.tls_cert_file, settings.tls_key_file) == ("/c", "/k")
    assert (settings.port, settings.metrics_port) == (8443, 9191)
    assert parse_args(["--plain-http"]).tls_cert_file is None
