"""The alert deliveries' HTTP client: it connects only where :mod:`.destinations` allows.

The policy is applied where the address is known for certain, twice:

- :class:`PolicyResolver` wraps the DNS resolver and drops every resolved address the
  policy forbids (a name with none left fails with :class:`DestinationRefused`), so a name
  that resolves to an internal address, or re-resolves to one (DNS rebinding), is never
  connected to; literal hosts in spellings the C library reads (``0x7f.1``, ``127.0.0.1.``)
  are resolved here too, without DNS;
- the connector's socket factory checks the address of every socket it opens, which also
  covers literal IP hosts (aiohttp does not resolve those) and whatever else might reach
  ``connect``.

Redirects are never followed (the answer's status is the result), proxies from the
environment are ignored, and plain ``http`` goes through a session whose policy admits only
allowlisted addresses, ``https`` through one that admits every permitted address.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import aiohttp
import yarl
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .destinations import DestinationPolicy, literal_address


class DestinationRefused(OSError):
    """The destination policy forbids every address of the host; ``rule`` says why."""

    def __init__(self, rule: str) -> None:
        super().__init__(errno.EACCES, "refused by destination policy")
        self.rule = rule


class PolicyResolver(AbstractResolver):
    """A resolver that returns only the addresses the policy allows."""

    def __init__(
        self, policy: DestinationPolicy, plain_http: bool, inner: AbstractResolver | None = None
    ) -> None:
        self._policy = policy
        self._plain_http = plain_http
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The permitted addresses of ``host`` (literal spellings are read, not looked up)."""
        literal = literal_address(host)
        if literal is not None:
            answers = [_result(host, str(literal), port, literal.version)]
        else:
            if self._inner is None:
                self._inner = DefaultResolver()
            answers = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for answer in answers:
            rule = _refusal(self._policy, answer["host"], self._plain_http)
            if rule is None:
                allowed.append(answer)
            else:
                refusals.append(rule)
        if not allowed:
            raise DestinationRefused(refusals[0] if refusals else "no address")
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        if self._inner is not None:
            await self._inner.close()


def _refusal(policy: DestinationPolicy, host: str, plain_http: bool) -> str | None:
    address = literal_address(host)
    if address is None:
        return "not an IP address"
    return policy.address_refusal(address, plain_http=plain_http)


def _result(host: str, address: str, port: int, version: int) -> ResolveResult:
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    return {
        "hostname": host,
        "host": address,
        "port": port,
        "family": family,
        "proto": 0,
        "flags": socket.AI_NUMERICHOST,
    }


def guarded_socket_factory(policy: DestinationPolicy, plain_http: bool) -> SocketFactoryType:
    """A socket factory that refuses to open a socket towards a forbidden address."""

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        rule = _refusal(policy, str(sockaddr[0]), plain_http)
        if rule is not None:
            raise DestinationRefused(rule)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


@dataclass(frozen=True)
class Answer:
    """What a destination answered: the status and its ``Retry-After`` header."""

    status: int
    retry_after: str | None = None


class GuardedClient:
    """Posts alert bodies under a destination policy; one per dispatcher (see module doc)."""

    def __init__(self, policy: DestinationPolicy, dns: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._dns = dns
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def _session(self, scheme: str) -> aiohttp.ClientSession:
        session = self._sessions.get(scheme)
        if session is None:
            plain_http = scheme != "https"
            connector = aiohttp.TCPConnector(
                resolver=PolicyResolver(self.policy, plain_http, self._dns),
                socket_factory=guarded_socket_factory(self.policy, plain_http),
                use_dns_cache=False,  # every connection is judged on a fresh answer
            )
            session = aiohttp.ClientSession(connector=connector, trust_env=False)
            self._sessions[scheme] = session
        return session

    async def post(
        self, url: yarl.URL, body: bytes, headers: dict[str, str], seconds: float
    ) -> Answer:
        """One POST, never following a redirect; raises aiohttp's errors on failure."""
        async with self._session(url.scheme).post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            return Answer(response.status, response.headers.get("Retry-After"))

    async def close(self) -> None:
        """Close the sessions."""
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def refused_by_policy(error: BaseException) -> bool:
    """Whether a delivery error is the destination policy's refusal (at resolve or connect)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, DestinationRefused):
            return True
        os_error = getattr(cause, "os_error", None)
        if isinstance(os_error, DestinationRefused):
            return True
        cause = cause.__cause__
    return False
