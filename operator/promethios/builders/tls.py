"""The ingest API's certificates: a self-signed CA, a serving certificate, when to renew.

Pure: PEM bytes in and out, the time passed in, no I/O. The operator (``auto`` mode)
keeps the result in one Secret (:func:`build_tls_secret`): ``tls.crt``/``tls.key`` are
what the ingest API serves, ``ca.crt`` is the bundle every sidecar verifies it against,
``ca.key`` signs the next serving certificate. :func:`decide` says whether what the
Secret holds can stay; a certificate that is valid, covers the wanted names and is not
yet due is never re-issued, so the operator may call it as often as it likes.

Renewal happens at two thirds of a certificate's lifetime. A new serving certificate
keeps the CA (the sidecars' bundle does not change). A new CA keeps the previous CA in
the bundle until it expires, so sidecars that still hold the old bundle keep verifying
the old serving certificate until their ConfigMap catches up.

ECDSA P-256 keys: generated in well under a millisecond, accepted by every TLS client.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..api.metadata import LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_PART_OF, MANAGED_BY
from .meta import Manifest

#: Secret keys (``kubernetes.io/tls`` plus the CA; cert-manager uses the same three).
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"
CA_KEY = "ca.crt"
CA_PRIVATE_KEY = "ca.key"
SECRET_TYPE = "kubernetes.io/tls"
COMPONENT = "ingest-tls"
CA_COMMON_NAME = "promethios-ingest-ca"
#: Certificates start this long before they are issued, so a peer whose clock is behind
#: does not refuse a fresh one.
CLOCK_SKEW = dt.timedelta(hours=1)


class TlsMode(StrEnum):
    """Where the ingest API's certificate comes from."""

    AUTO = "auto"
    """The operator issues and renews it (its own CA), kept in a Secret."""
    CERT_MANAGER = "cert-manager"
    """cert-manager issues it into a Secret; the operator only reads that Secret."""
    FILES = "files"
    """Certificate, key and CA bundle are files given on the command line."""
    OFF = "off"
    """Plain HTTP: agent keys cross the network in clear text (local development only)."""


class Renewal(Enum):
    """What :func:`decide` asks for."""

    KEEP = "keep"
    SERVING = "serving"
    """A new serving certificate from the current CA."""
    ALL = "all"
    """A new CA and a new serving certificate."""


@dataclass(frozen=True)
class Decision:
    """The renewal and why (for the log; never holds key material)."""

    renewal: Renewal
    reason: str


@dataclass(frozen=True)
class Lifetimes:
    """Validity of what :func:`issue` makes, and when :func:`decide` renews it."""

    ca: dt.timedelta = dt.timedelta(days=3650)
    serving: dt.timedelta = dt.timedelta(days=90)
    #: Renew once this fraction of a certificate's lifetime has passed.
    renew_fraction: float = 2 / 3

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < 1:
            raise ValueError(f"renew_fraction must be within (0, 1), not {self.renew_fraction}")
        if self.serving > self.ca:
            raise ValueError("the serving lifetime must not exceed the CA lifetime")


DEFAULT_LIFETIMES = Lifetimes()


@dataclass(frozen=True)
class ServingIdentity:
    """The names a serving certificate must cover."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()

    @classmethod
    def for_service(
        cls, service: str, namespace: str, extra: tuple[str, ...] = ()
    ) -> ServingIdentity:
        """``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local``, plus ``extra`` (names
        or IP addresses, e.g. the host of a local ingest URL)."""
        names = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
        addresses: list[str] = []
        for item in extra:
            try:
                addresses.append(str(ipaddress.ip_address(item)))
            except ValueError:
                names.append(item.lower())
        return cls(tuple(dict.fromkeys(names)), tuple(dict.fromkeys(addresses)))

    def general_names(self) -> list[x509.GeneralName]:
        """The subjectAltName entries."""
        dns: list[x509.GeneralName] = [x509.DNSName(name) for name in self.dns_names]
        ips: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ip_addresses
        ]
        return dns + ips


@dataclass(frozen=True)
class ServingMaterial:
    """What the Secret holds: PEM bytes. ``ca_key_pem`` is None when another issuer
    (cert-manager, files) signed the certificate."""

    cert_pem: bytes
    key_pem: bytes
    ca_bundle_pem: bytes
    ca_key_pem: bytes | None = None

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> ServingMaterial | None:
        """From a Secret's base64 ``data``; None when the certificate or key is absent."""
        decoded = {key: base64.b64decode(value) for key, value in data.items() if value}
        if not decoded.get(CERT_KEY) or not decoded.get(KEY_KEY):
            return None
        return cls(
            decoded[CERT_KEY],
            decoded[KEY_KEY],
            decoded.get(CA_KEY, b""),
            decoded.get(CA_PRIVATE_KEY),
        )

    def secret_data(self) -> dict[str, str]:
        """The Secret's base64 ``data``."""
        raw = {CERT_KEY: self.cert_pem, KEY_KEY: self.key_pem, CA_KEY: self.ca_bundle_pem}
        if self.ca_key_pem is not None:
            raw[CA_PRIVATE_KEY] = self.ca_key_pem
        return {key: base64.b64encode(value).decode() for key, value in raw.items()}


# -- reading ---------------------------------------------------------------------------------


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem) if pem.strip() else []
    except ValueError:
        return []


def _private_key(pem: bytes | None) -> ec.EllipticCurvePrivateKey | None:
    if not pem:
        return None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _same_public_key(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(key.public_key().public_bytes(*raw) == cert.public_key().public_bytes(*raw))


def _due(cert: x509.Certificate, now: dt.datetime, fraction: float) -> bool:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * fraction


def renewal_time(cert_pem: bytes, lifetimes: Lifetimes) -> dt.datetime | None:
    """When the (first) certificate in ``cert_pem`` is due for renewal; None if unreadable."""
    certs = _certificates(cert_pem)
    if not certs:
        return None
    start, end = certs[0].not_valid_before_utc, certs[0].not_valid_after_utc
    return start + (end - start) * lifetimes.renew_fraction


def covers(cert: x509.Certificate, identity: ServingIdentity) -> bool:
    """Whether the certificate's subjectAltName holds every wanted name and address."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns = {name.lower() for name in names.get_values_for_type(x509.DNSName)}
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return set(identity.dns_names) <= dns and set(identity.ip_addresses) <= ips


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def decide(
    material: ServingMaterial | None,
    identity: ServingIdentity,
    now: dt.datetime,
    lifetimes: Lifetimes = DEFAULT_LIFETIMES,
) -> Decision:
    """Keep what the Secret holds, or say what to issue and why."""
    if material is None:
        return Decision(Renewal.ALL, "no certificate yet")
    cas, ca_key = _certificates(material.ca_bundle_pem), _private_key(material.ca_key_pem)
    if not cas or ca_key is None or not _same_public_key(ca_key, cas[0]):
        return Decision(Renewal.ALL, "the CA certificate or its key is missing or unreadable")
    if _due(cas[0], now, lifetimes.renew_fraction):
        return Decision(Renewal.ALL, "the CA is due for renewal")
    certs, key = _certificates(material.cert_pem), _private_key(material.key_pem)
    if not certs or key is None or not _same_public_key(key, certs[0]):
        return Decision(Renewal.SERVING, "the serving certificate or its key is unreadable")
    if not _issued_by(certs[0], cas[0]):
        return Decision(Renewal.SERVING, "the serving certificate is not from the current CA")
    if not covers(certs[0], identity):
        return Decision(Renewal.SERVING, "the serving certificate lacks a wanted name")
    if _due(certs[0], now, lifetimes.renew_fraction):
        return Decision(Renewal.SERVING, "the serving certificate is due for renewal")
    return Decision(Renewal.KEEP, "valid")


# -- issuing ---------------------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    """A P-256 key (the curve every certificate here uses)."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _new_ca(now: dt.datetime, lifetime: dt.timedelta) -> tuple[x509.Certificate, bytes]:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, private_key_pem(key)


def _new_serving(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    identity: ServingIdentity,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> tuple[bytes, bytes]:
    key = new_key()
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.dns_names[0])])
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + lifetime, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(identity.general_names()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return certificate_pem(cert), private_key_pem(key)


def issue(
    decision: Decision,
    material: ServingMaterial | None,
    identity: ServingIdentity,
    now: dt.datetime,
    lifetimes: Lifetimes = DEFAULT_LIFETIMES,
) -> ServingMaterial:
    """What the Secret should hold after ``decision`` (``material`` itself for KEEP)."""
    if decision.renewal is Renewal.KEEP:
        if material is None:
            raise ValueError("nothing to keep")
        return material
    if not identity.dns_names:
        raise ValueError("a serving identity needs at least one DNS name")
    previous = _certificates(material.ca_bundle_pem) if material is not None else []
    if decision.renewal is Renewal.ALL:
        ca, ca_key_pem = _new_ca(now, lifetimes.ca)
        # The previous CAs stay trusted until they expire (sidecars with the old bundle).
        kept = [old for old in previous if old.not_valid_after_utc > now and old != ca]
        bundle = [ca, *kept]
    else:
        assert material is not None and material.ca_key_pem is not None
        expired = [old for old in previous[1:] if old.not_valid_after_utc <= now]
        bundle = [cert for cert in previous if cert not in expired]
        ca_key_pem = material.ca_key_pem
    ca_key = _private_key(ca_key_pem)
    assert ca_key is not None
    cert_pem, key_pem = _new_serving(bundle[0], ca_key, identity, now, lifetimes.serving)
    return ServingMaterial(cert_pem, key_pem, b"".join(map(certificate_pem, bundle)), ca_key_pem)


def build_tls_secret(namespace: str, name: str, material: ServingMaterial) -> Manifest:
    """The ``kubernetes.io/tls`` Secret holding the material (the operator owns it)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_PART_OF: "promethios",
                LABEL_COMPONENT: COMPONENT,
            },
        },
        "data": material.secret_data(),
    }
