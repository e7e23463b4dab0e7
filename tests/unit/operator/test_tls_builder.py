"""The ingest API's certificates (builders/tls.py): names, validity, renewal, the Secret.

Handshakes are real (OpenSSL through :mod:`ssl`, over a socket pair): a certificate is
judged by whether a verifying TLS client accepts it, not by reading its fields back.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import tempfile
import threading
from pathlib import Path

import pytest
from cryptography import x509

from promethios.builders.tls import (
    CA_KEY,
    CA_PRIVATE_KEY,
    CERT_KEY,
    KEY_KEY,
    Lifetimes,
    Renewal,
    ServingIdentity,
    ServingMaterial,
    build_tls_secret,
    covers,
    decide,
    issue,
    renewal_time,
)

#: Handshakes check validity against the real clock, so "now" is real; decisions take it
#: (or a time derived from it) as an argument.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
IDENTITY = ServingIdentity.for_service("promethios-operator", "promethios-system", ("127.0.0.1",))
SERVICE_NAME = "promethios-operator.promethios-system.svc"
LIFETIMES = Lifetimes(ca=dt.timedelta(days=300), serving=dt.timedelta(days=30))


def fresh(now: dt.datetime = NOW, identity: ServingIdentity = IDENTITY) -> ServingMaterial:
    return issue(decide(None, identity, now, LIFETIMES), None, identity, now, LIFETIMES)


def handshake(material: ServingMaterial, ca_pem: bytes, server_name: str) -> None:
    """A TLS handshake: server with ``material``, client trusting only ``ca_pem``.

    Raises ``ssl.SSLCertVerificationError`` when the client refuses the server."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(material.cert_pem)
        key.write_bytes(material.key_pem)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cadata=ca_pem.decode())
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_context.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as error:
            errors.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_context.wrap_socket(right, server_hostname=server_name) as tls:
            tls.sendall(b"x")
    finally:
        thread.join(10)


# -- names and validity ----------------------------------------------------------------------


def test_identity_holds_the_service_names_and_the_extra_ones() -> None:
    identity = ServingIdentity.for_service("ingest", "ops", ("Local.Test", "::1", "10.0.0.7"))
    assert identity.dns_names == ("ingest.ops.svc", "ingest.ops.svc.cluster.local", "local.test")
    assert identity.ip_addresses == ("::1", "10.0.0.7")


def test_a_client_trusting_the_ca_accepts_the_certificate_for_every_wanted_name() -> None:
    material = fresh()
    for name in (SERVICE_NAME, f"{SERVICE_NAME}.cluster.local", "127.0.0.1"):
        handshake(material, material.ca_bundle_pem, name)


def test_a_client_refuses_another_name_or_another_ca() -> None:
    material, other = fresh(), fresh()
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(material, material.ca_bundle_pem, "evil.promethios-system.svc")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(material, other.ca_bundle_pem, SERVICE_NAME)


def test_validity_starts_before_now_and_ends_after_the_lifetime() -> None:
    material = fresh()
    (cert,) = x509.load_pem_x509_certificates(material.cert_pem)
    (ca,) = x509.load_pem_x509_certificates(material.ca_bundle_pem)
    assert cert.not_valid_before_utc == NOW - dt.timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + LIFETIMES.serving
    assert ca.not_valid_after_utc == NOW + LIFETIMES.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert renewal_time(material.cert_pem, LIFETIMES) == NOW + dt.timedelta(days=20, hours=-1 / 3)


def test_lifetimes_are_checked() -> None:
    with pytest.raises(ValueError, match="renew_fraction"):
        Lifetimes(renew_fraction=1.0)
    with pytest.raises(ValueError, match="must not exceed the CA"):
        Lifetimes(ca=dt.timedelta(days=1), serving=dt.timedelta(days=2))


# -- renewal -------------------------------------------------------------------------------


def test_never_reissued_while_valid() -> None:
    material = fresh()
    for later in (NOW, NOW + 10 * DAY, NOW + 19 * DAY):
        decision = decide(material, IDENTITY, later, LIFETIMES)
        assert decision.renewal is Renewal.KEEP, (later, decision)
        assert issue(decision, material, IDENTITY, later, LIFETIMES) is material


def test_serving_certificate_renewed_at_two_thirds_keeping_the_ca() -> None:
    material = fresh(NOW - 25 * DAY)  # valid for five more days, renewal due already
    due = renewal_time(material.cert_pem, LIFETIMES)
    assert due is not None and due < NOW
    early = decide(material, IDENTITY, due - dt.timedelta(seconds=1), LIFETIMES)
    assert early.renewal is Renewal.KEEP
    decision = decide(material, IDENTITY, due, LIFETIMES)
    assert decision.renewal is Renewal.SERVING, decision
    renewed = issue(decision, material, IDENTITY, due, LIFETIMES)
    assert renewed.ca_bundle_pem == material.ca_bundle_pem  # the sidecars' bundle stays
    assert renewed.ca_key_pem == material.ca_key_pem
    assert renewed.cert_pem != material.cert_pem and renewed.key_pem != material.key_pem
    handshake(renewed, material.ca_bundle_pem, SERVICE_NAME)
    assert decide(renewed, IDENTITY, due, LIFETIMES).renewal is Renewal.KEEP


def test_a_new_ca_keeps_the_old_one_in_the_bundle_until_it_expires() -> None:
    material = fresh(NOW - 250 * DAY)  # CA valid 50 more days, past two thirds
    decision = decide(material, IDENTITY, NOW, LIFETIMES)
    assert decision.renewal is Renewal.ALL and "CA" in decision.reason
    renewed = issue(decision, material, IDENTITY, NOW, LIFETIMES)
    bundle = x509.load_pem_x509_certificates(renewed.ca_bundle_pem)
    (old_ca,) = x509.load_pem_x509_certificates(material.ca_bundle_pem)
    assert len(bundle) == 2 and bundle[1] == old_ca
    handshake(renewed, renewed.ca_bundle_pem, SERVICE_NAME)
    # A sidecar holding only the old bundle cannot verify the new serving certificate...
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(renewed, material.ca_bundle_pem, SERVICE_NAME)
    # ...and once the old CA has expired, the next renewal drops it from the bundle.
    after = NOW + 51 * DAY
    serving = issue(
        decide(renewed, IDENTITY, after, LIFETIMES), renewed, IDENTITY, after, LIFETIMES
    )
    assert x509.load_pem_x509_certificates(serving.ca_bundle_pem) == bundle[:1]


def test_a_new_name_or_a_broken_secret_is_reissued() -> None:
    material = fresh()
    wider = ServingIdentity.for_service("promethios-operator", "promethios-system", ("10.1.2.3",))
    decision = decide(material, wider, NOW, LIFETIMES)
    assert decision.renewal is Renewal.SERVING and "name" in decision.reason
    renewed = issue(decision, material, wider, NOW, LIFETIMES)
    assert covers(x509.load_pem_x509_certificates(renewed.cert_pem)[0], wider)
    other = fresh()
    mismatched = ServingMaterial(
        material.cert_pem, other.key_pem, material.ca_bundle_pem, material.ca_key_pem
    )
    assert decide(mismatched, IDENTITY, NOW, LIFETIMES).renewal is Renewal.SERVING
    foreign = ServingMaterial(
        other.cert_pem, other.key_pem, material.ca_bundle_pem, material.ca_key_pem
    )
    assert "not from the current CA" in decide(foreign, IDENTITY, NOW, LIFETIMES).reason
    for broken in (
        ServingMaterial(material.cert_pem, material.key_pem, b"garbage", material.ca_key_pem),
        ServingMaterial(material.cert_pem, material.key_pem, material.ca_bundle_pem, None),
        ServingMaterial(
            material.cert_pem, material.key_pem, material.ca_bundle_pem, other.ca_key_pem
        ),
    ):
        assert decide(broken, IDENTITY, NOW, LIFETIMES).renewal is Renewal.ALL


# -- the Secret ----------------------------------------------------------------------------


def test_secret_round_trips_and_holds_only_the_tls_keys() -> None:
    material = fresh()
    secret = build_tls_secret("promethios-system", "promethios-operator-ingest-tls", material)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["namespace"] == "promethios-system"
    assert set(secret["data"]) == {CERT_KEY, KEY_KEY, CA_KEY, CA_PRIVATE_KEY}
    assert base64.b64decode(secret["data"][CA_KEY]) == material.ca_bundle_pem
    assert ServingMaterial.from_secret_data(secret["data"]) == material
    assert ServingMaterial.from_secret_data({CA_KEY: secret["data"][CA_KEY]}) is None
