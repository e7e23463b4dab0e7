"""TLS for the ingest API: one server context whose certificate is replaced while serving.

Handshakes started after :meth:`ServingTls.load` use the new certificate; connections
already open keep the one they negotiated. A new certificate and key are first loaded
into a scratch context, so a mismatched or unreadable pair is refused (the old one keeps
serving) instead of leaving the live context half-replaced.

Two sources: :class:`CertificateFiles` polls a certificate and key on disk (a mounted
Secret, which the kubelet swaps atomically on rotation); the operator's in-process
ingest is handed the PEM bytes of the Secret it keeps (:mod:`promethios.composition`).
The standard library loads certificates only from files, so the PEM bytes pass through
a private temporary directory that is removed as soon as they are loaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


class TlsError(ValueError):
    """A certificate or key that cannot serve (message names the files, never key bytes)."""


def server_context() -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, the standard library's secure defaults."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ServingTls:
    """The live server context and the fingerprint of the pair it serves."""

    def __init__(self) -> None:
        self.context = server_context()
        self.fingerprint: str | None = None
        self.reloads = 0

    @property
    def loaded(self) -> bool:
        """Whether a certificate has been loaded (the context can serve)."""
        return self.fingerprint is not None

    def load(self, cert_pem: bytes, key_pem: bytes, source: str = "the certificate") -> bool:
        """Serve this certificate chain and key from the next handshake on.

        Returns False when it is the pair already served. Raises :class:`TlsError` (the
        served pair stays) when the two do not make a usable pair.
        """
        fingerprint = hashlib.sha256(cert_pem + b"\0" + key_pem).hexdigest()
        if fingerprint == self.fingerprint:
            return False
        with tempfile.TemporaryDirectory(prefix="promethios-tls-") as tmp:
            cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            for path, data in ((cert_file, cert_pem), (key_file, key_pem)):
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data)
            try:
                server_context().load_cert_chain(cert_file, key_file)
            except (ssl.SSLError, OSError) as error:
                raise TlsError(f"{source}: not a usable certificate and key ({error})") from None
            self.context.load_cert_chain(cert_file, key_file)
        self.fingerprint = fingerprint
        self.reloads += 1
        return True


class CertificateFiles:
    """A certificate and key on disk, served by a :class:`ServingTls` and re-read often."""

    def __init__(self, tls: ServingTls, cert_file: str, key_file: str, interval: float) -> None:
        self.tls, self.cert_file, self.key_file = tls, cert_file, key_file
        self.interval = interval

    def load(self) -> bool:
        """Read both files and serve them if they changed; raises :class:`TlsError`."""
        try:
            cert_pem = Path(self.cert_file).read_bytes()
            key_pem = Path(self.key_file).read_bytes()
        except OSError as error:
            raise TlsError(f"cannot read {error.filename}: {error.strerror}") from None
        source = f"{self.cert_file} and {self.key_file}"
        changed = self.tls.load(cert_pem, key_pem, source)
        if changed:
            log.info("ingest API serves the certificate in %s", self.cert_file)
        return changed

    async def watch(self) -> None:
        """Reload every ``interval`` seconds; a bad pair is logged and the old one kept."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.load()
            except TlsError as error:
                log.warning("keeping the served certificate: %s", error)
