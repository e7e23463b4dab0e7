"""The ingest API's certificate as the operator keeps it, and the CA bundle it publishes.

One :class:`CertificateKeeper` per operator process, by mode (:class:`~..builders.tls.TlsMode`):

- ``auto``: the operator's own CA. Each pass reads the Secret, asks
  :func:`~..builders.tls.decide` whether it can stay, and only if not issues what is
  missing and server-side applies the Secret (with the read resourceVersion as a
  precondition, so two writers never both win). A valid certificate is never re-issued.
- ``cert-manager``: cert-manager fills the Secret (``tls.crt``, ``tls.key``, ``ca.crt``);
  the operator only reads it, and waits at start until it exists.
- ``files``: certificate and key files (served by the in-process ingest, which re-reads
  them itself) and a CA bundle file to publish.
- ``off``: nothing is kept or published; a warning says what that means.

:meth:`CertificateKeeper.refresh` runs once before kopf starts, so the first reconcile
already renders the https URL with the CA bundle, then every ``check_seconds`` on a
daemon thread. When what it holds changes, every listener hears of it: the build
settings take the new CA bundle (and every agent is reconciled, so its ConfigMap carries
it) and the in-process ingest serves the new certificate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from ..builders.tls import (
    DEFAULT_LIFETIMES,
    Lifetimes,
    Renewal,
    ServingIdentity,
    ServingMaterial,
    TlsMode,
    build_tls_secret,
    decide,
    issue,
)
from ..kube import apply as kapply
from ..kube import objects
from ..kube.client import Client

log = logging.getLogger(__name__)

OFF_WARNING = (
    "--tls-mode=off: the ingest API speaks PLAIN HTTP and agent API keys cross the network "
    "in clear text. Use this for local development only."
)
#: How often the start waits again for a Secret cert-manager has not filled yet.
WAIT_INTERVAL = 2.0

Listener = Callable[[ServingMaterial | None], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TlsUnavailable(RuntimeError):
    """The certificate cannot be had yet (message names the Secret or file)."""


@dataclass(frozen=True)
class TlsOptions:
    """Where the ingest API's certificate comes from (the operator's ``--tls-*`` flags)."""

    mode: TlsMode = TlsMode.AUTO
    secret_namespace: str = "promethios-system"
    secret_name: str = "promethios-operator-ingest-tls"
    #: The Service the sidecars reach the ingest API through (its DNS names are the SANs).
    service_name: str = "promethios-operator"
    #: More DNS names or IP addresses for the certificate (e.g. a local run's 127.0.0.1).
    extra_sans: tuple[str, ...] = ()
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    check_seconds: float = 300.0
    lifetimes: Lifetimes = DEFAULT_LIFETIMES

    def identity(self, ingest_url: str) -> ServingIdentity:
        """The Service's names, the extra ones and the host of the URL sidecars use."""
        host = urlsplit(ingest_url).hostname
        extra = (*self.extra_sans, host) if host else self.extra_sans
        return ServingIdentity.for_service(self.service_name, self.secret_namespace, extra)


@dataclass
class CertificateKeeper:
    """Keeps the material current and tells the listeners when it changes."""

    client: Client
    options: TlsOptions
    identity: ServingIdentity
    clock: Callable[[], datetime] = _utcnow
    listeners: list[Listener] = field(default_factory=list)
    current: ServingMaterial | None = None
    issued: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def secret_ref(self) -> str:
        return f"{self.options.secret_namespace}/{self.options.secret_name}"

    def refresh(self) -> ServingMaterial | None:
        """One pass: read (and in ``auto`` mode renew); notify listeners of a change."""
        material = self._read()
        if material != self.current:
            self.current = material
            for listener in self.listeners:
                try:
                    listener(material)
                except Exception:
                    log.exception("a listener of the ingest certificate failed")
        return material

    def _read(self) -> ServingMaterial | None:
        mode = self.options.mode
        if mode == TlsMode.AUTO:
            return self._auto()
        if mode == TlsMode.CERT_MANAGER:
            return self._cert_manager()
        if mode == TlsMode.FILES:
            return self._files()
        return None

    def _auto(self) -> ServingMaterial:
        for _ in range(3):
            live = objects.get(self.client, "Secret", *self._secret_key())
            existing = ServingMaterial.from_secret_data((live or {}).get("data") or {})
            now = self.clock()
            decision = decide(existing, self.identity, now, self.options.lifetimes)
            if decision.renewal is Renewal.KEEP and existing is not None:
                return existing
            material = issue(decision, existing, self.identity, now, self.options.lifetimes)
            manifest = build_tls_secret(*self._secret_key(), material)
            if live is not None:
                manifest["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            try:
                kapply.apply(self.client, manifest)
            except kapply.ApiException as error:
                if error.status == 409:
                    continue  # another writer renewed it first: read what it wrote
                raise
            self.issued += 1
            log.info("ingest TLS: Secret %s written: %s", self.secret_ref, decision.reason)
            return material
        raise TlsUnavailable(f"Secret {self.secret_ref} kept changing while it was renewed")

    def _cert_manager(self) -> ServingMaterial:
        live = objects.get(self.client, "Secret", *self._secret_key())
        material = ServingMaterial.from_secret_data((live or {}).get("data") or {})
        if material is None:
            state = "has no tls.crt/tls.key yet" if live is not None else "does not exist yet"
            raise TlsUnavailable(f"Secret {self.secret_ref} {state} (cert-manager issues it)")
        return ServingMaterial(material.cert_pem, material.key_pem, material.ca_bundle_pem)

    def _files(self) -> ServingMaterial:
        """The CA bundle to publish; the in-process ingest reads certificate and key itself."""
        ca_file = self.options.ca_file
        try:
            bundle = Path(ca_file).read_bytes() if ca_file else b""
        except OSError as error:
            raise TlsUnavailable(f"--tls-ca-file {ca_file}: {error.strerror}") from None
        return ServingMaterial(b"", b"", bundle)

    def _secret_key(self) -> tuple[str, str]:
        return self.options.secret_namespace, self.options.secret_name

    def start(self) -> ServingMaterial | None:
        """The first pass (waiting while the certificate is unavailable), then the thread."""
        if self.options.mode == TlsMode.OFF:
            log.warning(OFF_WARNING)
            return None
        while True:
            try:
                material = self.refresh()
                break
            except TlsUnavailable as error:
                log.warning("waiting for the ingest certificate: %s", error)
            if self.stopping.wait(WAIT_INTERVAL):
                return None
        self._thread = threading.Thread(target=self._run, name="promethios-tls", daemon=True)
        self._thread.start()
        return material

    def _run(self) -> None:
        while not self.stopping.wait(self.options.check_seconds):
            try:
                self.refresh()
            except Exception:
                log.warning("ingest certificate check failed; next in %ss",
                            self.options.check_seconds, exc_info=True)  # fmt: skip

    def stop(self) -> None:
        """Stop the periodic checks."""
        self.stopping.set()
