"""Where an alert delivery may connect (pure): the AlertSink destination policy.

Whoever may create an AlertSink chooses the URL the ingest API posts to, from inside the
cluster. Without a policy that is server-side request forgery: the cloud metadata address
(credentials), the pod's own loopback ports, every Service and pod address. The policy:

- **never** (no allowlist entry re-allows these): the cloud metadata addresses
  (:data:`METADATA_ADDRESSES`, and :data:`METADATA_NAMES` by name), link-local
  (169.254.0.0/16, fe80::/10), unspecified (0.0.0.0, ::) and multicast addresses;
- **refused unless allowlisted**: loopback, private and shared ranges (10/8, 172.16/12,
  192.168/16, 100.64/10, fc00::/7), and every other address that is not globally routable;
- ``https`` is required; plain ``http`` only to addresses inside the operator's allowlist
  (``--alert-sink-allow-cidr``, e.g. an in-cluster receiver's range, or 127.0.0.1/32 in
  tests);
- IPv6 forms that carry an IPv4 address (``::ffff:a.b.c.d``, ``::a.b.c.d``, NAT64
  ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo) are judged by that address as well.

:meth:`DestinationPolicy.url_refusal` judges the URL as written (scheme, literal address in
any spelling ``inet_aton`` accepts: ``2130706433``, ``0177.0.0.1``, ``0x7f.1``, trailing dots);
:meth:`DestinationPolicy.address_refusal` judges each address actually connected to
(:mod:`.egress` applies it to every resolved address and every socket), so names that resolve
to forbidden addresses, and DNS rebinding, are caught too.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import yarl

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle instance metadata
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure WireServer (a public address, so named here)
    )
)
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_INET_ATON_FORM = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)

# The rules, as the Warning Event states them after the field name (``spec.url ...``).
PLAIN_HTTP = "must use https: plain http is allowed only to addresses in the operator's allowlist"
NOT_HTTP = "must be an http(s) URL with a host"
METADATA = "points at a cloud metadata address, which is never allowed"
LINK_LOCAL = "points at a link-local address, which is never allowed"
UNSPECIFIED = "points at an unspecified address (0.0.0.0 or ::), which is never allowed"
MULTICAST = "points at a multicast address, which is never allowed"
LOOPBACK = "points at a loopback address outside the operator's allowlist"
PRIVATE = "points at a private or non-routable address outside the operator's allowlist"


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally (any spelling the resolver would accept), else None.

    Trailing dots are ignored, IPv6 zone ids are kept (``fe80::1%eth0``), and the legacy
    IPv4 forms ``inet_aton`` accepts (decimal ``2130706433``, octal ``0177.0.0.1``, hex
    ``0x7f.1``, short ``127.1``) are read the way the C library reads them.
    """
    text = host.strip().rstrip(".").strip("[]")
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _INET_ATON_FORM.match(text):
        try:
            return IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _judged_as(address: IPAddress) -> list[IPAddress]:
    """The addresses ``address`` is judged as: itself, or the IPv4 address it carries."""
    if isinstance(address, IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 host itself
        return [address.ipv4_mapped]
    plain = IPv6Address(int(address))  # without a zone id, for the range tests below
    if plain in _IPV4_COMPATIBLE and int(plain) > 1:  # deprecated ::a.b.c.d
        return [IPv4Address(int(plain) & 0xFFFFFFFF)]
    carried: list[IPAddress] = [address]
    if plain in _NAT64:
        carried.append(IPv4Address(int(plain) & 0xFFFFFFFF))
    if plain.sixtofour is not None:
        carried.append(plain.sixtofour)
    if plain.teredo is not None:
        carried.extend(plain.teredo)
    return carried


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses alert deliveries may connect to (see the module docstring).

    ``allowed``: the operator's allowlist; it re-allows loopback, private and plain-http
    destinations inside it, never the metadata, link-local, unspecified or multicast ones.
    """

    allowed: tuple[IPNetwork, ...] = ()

    def allows(self, address: IPAddress) -> bool:
        """Whether ``address`` is inside an allowlisted network."""
        plain = IPv6Address(int(address)) if isinstance(address, IPv6Address) else address
        return any(plain.version == net.version and plain in net for net in self.allowed)

    def address_refusal(self, address: IPAddress, *, plain_http: bool) -> str | None:
        """The rule that forbids connecting to ``address``, or None if it may be used."""
        for judged in _judged_as(address):
            rule = self._refusal(judged, plain_http)
            if rule is not None:
                return rule
        return None

    def url_refusal(self, url: str) -> str | None:
        """The rule the URL as written breaks, or None (names are judged when resolved).

        Decided from the URL text and the allowlist alone, never from the network.
        """
        try:
            parsed = yarl.URL(url)
        except (ValueError, TypeError):
            return NOT_HTTP
        host = (parsed.host or "").lower()
        if parsed.scheme not in ("http", "https") or not host.strip("."):
            return NOT_HTTP
        if host.rstrip(".") in METADATA_NAMES:
            return METADATA
        address = literal_address(host)
        plain_http = parsed.scheme == "http"
        if address is not None:
            return self.address_refusal(address, plain_http=plain_http)
        if plain_http and not self.allowed:
            return PLAIN_HTTP  # a name can only pass plain http by resolving into the allowlist
        return None

    def _refusal(self, address: IPAddress, plain_http: bool) -> str | None:
        plain = IPv6Address(int(address)) if isinstance(address, IPv6Address) else address
        if plain in METADATA_ADDRESSES:
            return METADATA
        if plain.is_unspecified:
            return UNSPECIFIED
        if plain.is_multicast:
            return MULTICAST
        if plain.is_link_local:
            return LINK_LOCAL
        if self.allows(plain):
            return None
        if plain_http:
            return PLAIN_HTTP
        if plain.is_loopback:
            return LOOPBACK
        if not plain.is_global or (isinstance(plain, IPv6Address) and plain.is_site_local):
            return PRIVATE
        return None
