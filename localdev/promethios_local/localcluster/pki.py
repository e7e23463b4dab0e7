"""Throw-away PKI for the local control plane (pure: returns PEM bytes, writes nothing).

One CA signs the API server's serving certificate and a client certificate per
identity (the admin in ``system:masters``, the controller-manager, the scheduler).
A separate key pair signs service-account tokens. ECDSA P-256 keys keep generation
well under a millisecond each.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from promethios.builders.tls import certificate_pem, new_key, private_key_pem

VALIDITY = dt.timedelta(days=365)
CLOCK_SKEW = dt.timedelta(hours=1)


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM (PKCS#8) private key."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client certificate authenticates as: user name and groups."""

    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pki:
    """Everything the control plane needs: CA, serving cert, client certs, SA keys."""

    ca: KeyPair
    serving: KeyPair
    clients: dict[str, KeyPair]
    service_account_key_pem: bytes
    service_account_pub_pem: bytes


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def generate_ca(
    common_name: str = "promethios-local-ca",
) -> tuple[KeyPair, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA; returns its PEMs plus the objects needed to sign leaves."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        _builder(name, name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(certificate_pem(cert), private_key_pem(key)), cert, key


def _sign_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None = None,
) -> KeyPair:
    key = new_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), dt.datetime.now(dt.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return KeyPair(certificate_pem(builder.sign(ca_key, hashes.SHA256())), private_key_pem(key))


def serving_san(dns_names: list[str], ip_addresses: list[str]) -> x509.SubjectAlternativeName:
    """The subjectAltName of the API server's serving certificate."""
    general: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    general += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    return x509.SubjectAlternativeName(general)


def client_subject(identity: ClientIdentity) -> x509.Name:
    """CN is the Kubernetes user name, each O a group (how the API server reads certs)."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in identity.groups]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
    return x509.Name(attributes)


def generate_service_account_keys() -> tuple[bytes, bytes]:
    """The (private, public) PEM pair that signs and verifies service-account tokens."""
    key = new_key()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_key_pem(key), public


def generate_pki(
    dns_names: list[str],
    ip_addresses: list[str],
    clients: dict[str, ClientIdentity],
) -> Pki:
    """Generate the whole PKI: CA, API server serving cert, one client cert per identity."""
    ca, ca_cert, ca_key = generate_ca()
    serving = _sign_leaf(
        ca_cert,
        ca_key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        serving_san(dns_names, ip_addresses),
    )
    client_pairs = {
        name: _sign_leaf(ca_cert, ca_key, client_subject(identity), ExtendedKeyUsageOID.CLIENT_AUTH)
        for name, identity in clients.items()
    }
    sa_key, sa_pub = generate_service_account_keys()
    return Pki(ca, serving, client_pairs, sa_key, sa_pub)
