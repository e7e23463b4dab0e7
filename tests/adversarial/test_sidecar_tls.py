"""Escape 12 (sidecar side): the agent's ingest key must not go to whoever answers.

Over ``https`` the sidecar verifies the ingest's certificate against the CA bundle
named by ``ingest.caFile``: an ingest (or anyone in the middle) presenting a
certificate from another CA gets nothing, not even the request; the right one
gets the reports. The certificates are made here, with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sidecar_fakes import Ingest, SidecarFactory, serve

from promethios.api.wire import PATH_HEARTBEAT


@dataclass
class Authority:
    """A CA and one server certificate it signed for 127.0.0.1, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_authority(directory: Path, label: str) -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} CA"))
        .issuer_name(_name(f"{label} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("promethios-ingest"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    authority = Authority(directory / "ca.pem", directory / "tls.crt", directory / "tls.key")
    authority.ca_file.write_bytes(ca.public_bytes(pem))
    authority.cert_file.write_bytes(cert.public_bytes(pem))
    authority.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return authority


@pytest.fixture
def authorities(tmp_path: Path) -> tuple[Authority, Authority]:
    return make_authority(tmp_path / "ours", "ours"), make_authority(tmp_path / "theirs", "theirs")


@pytest.fixture
async def tls_ingest(authorities: tuple[Authority, Authority]) -> AsyncIterator[Ingest]:
    """The ingest recorder over https, with a certificate from *our* CA."""
    recorder = Ingest()
    recorder.server = await serve(recorder.handle, ssl=authorities[0].server_context())
    yield recorder
    await recorder.server.close()


@pytest.fixture
async def impostor(authorities: tuple[Authority, Authority]) -> AsyncIterator[Ingest]:
    """Someone answering at the ingest's address with a certificate from another CA."""
    recorder = Ingest()
    recorder.server = await serve(recorder.handle, ssl=authorities[1].server_context())
    yield recorder
    await recorder.server.close()


async def test_sidecar_verifies_the_ingest_against_its_ca(
    make_sidecar: SidecarFactory, tls_ingest: Ingest, authorities: tuple[Authority, Authority]
) -> None:
    sidecar = await make_sidecar(
        ingest={"url": tls_ingest.url, "caFile": str(authorities[0].ca_file)}
    )
    assert tls_ingest.url.startswith("https://")
    assert sidecar.delivery is not None
    assert (await sidecar.delivery.send_heartbeat()).ok
    [(path, headers, _)] = tls_ingest.requests
    assert path == PATH_HEARTBEAT and headers["Authorization"] == "Bearer key-1"


async def test_sidecar_refuses_an_ingest_with_a_certificate_from_another_ca(
    make_sidecar: SidecarFactory, impostor: Ingest, authorities: tuple[Authority, Authority]
) -> None:
    sidecar = await make_sidecar(
        ingest={"url": impostor.url, "caFile": str(authorities[0].ca_file)}
    )
    assert sidecar.delivery is not None
    response = await sidecar.delivery.send_heartbeat()
    assert response.status is None  # the handshake failed: nothing was sent
    assert impostor.requests == []  # the key never reached the impostor


async def test_without_a_ca_file_the_system_trust_store_refuses_a_private_ca(
    make_sidecar: SidecarFactory, tls_ingest: Ingest
) -> None:
    sidecar = await make_sidecar(ingest={"url": tls_ingest.url})
    assert sidecar.delivery is not None
    assert (await sidecar.delivery.send_heartbeat()).status is None
    assert tls_ingest.requests == []


async def test_a_rotated_ca_file_is_picked_up(
    make_sidecar: SidecarFactory, tls_ingest: Ingest, authorities: tuple[Authority, Authority]
) -> None:
    ca_file = authorities[1].ca_file.parent / "bundle.pem"
    ca_file.write_bytes(authorities[1].ca_file.read_bytes())  # the wrong CA, for now
    sidecar = await make_sidecar(ingest={"url": tls_ingest.url, "caFile": str(ca_file)})
    assert sidecar.delivery is not None
    assert (await sidecar.delivery.send_heartbeat()).status is None
    ca_file.write_bytes(authorities[0].ca_file.read_bytes())  # rotation: now ours
    stat = ca_file.stat()
    os.utime(ca_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    for _ in range(100):  # the config poll runs every 50 ms in tests
        if (await sidecar.delivery.send_heartbeat()).ok:
            break
        await asyncio.sleep(0.05)
    assert len(tls_ingest.requests) == 1


async def test_an_unreadable_ca_file_fails_closed(
    make_sidecar: SidecarFactory, tls_ingest: Ingest, tmp_path: Path
) -> None:
    sidecar = await make_sidecar(ingest={"url": tls_ingest.url, "caFile": str(tmp_path / "nope")})
    assert sidecar.delivery is not None
    assert (await sidecar.delivery.send_heartbeat()).status is None
    assert tls_ingest.requests == []
