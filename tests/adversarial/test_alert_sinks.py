"""AlertSinks as the attacker's tool (issue 10, items 9 and 11).

Whoever may create an AlertSink (a namespace user), or write a violation (the governed agent),
tries to make the ingest API:

- connect where it must not (SSRF): loopback in any spelling, cloud metadata, link-local,
  private ranges, names that resolve there, DNS rebinding, redirects;
- tell them what it found (a port-scan oracle): the AlertDeliveryFailed Event, the logs, the
  number of attempts and the time of the Event must read the same for a closed, an open and
  a filtered port;
- ping a whole Slack channel or disguise a link with agent-written text;
- get a captured webhook delivery accepted again later (replay).

The forbidden listener is 127.0.0.2 (loopback, answering without setup) while the tests'
receivers are allowlisted as 127.0.0.1/32, as an operator would allowlist a receiver.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any

import pytest
from aiohttp import web
from alert_sink_harness import FakeDNS, Listener, Receiver, deliver
from hypothesis import given
from hypothesis import strategies as st

from promethios.ingest.alertformat import (
    ResolvedSink,
)
from promethios.ingest.alerts import failure_message, worst_case_seconds
from promethios.ingest.destinations import METADATA, PLAIN_HTTP, DestinationPolicy

RECEIVERS = DestinationPolicy((ip_network("127.0.0.1/32"),))
FORBIDDEN = "127.0.0.2"


def webhook(url: str, name: str = "hook", **values: Any) -> ResolvedSink:
    options: dict[str, Any] = {"timeout_seconds": 0.5, "max_retries": 0, **values}
    return ResolvedSink(name, "webhook", url, **options)


@pytest.fixture
async def listener() -> AsyncIterator[tuple[Listener, int]]:
    forbidden = Listener()
    port = await forbidden.start(FORBIDDEN)
    yield forbidden, port
    await forbidden.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    allowed = Receiver()
    port = await allowed.start()
    yield allowed, port
    await allowed.close()


# -- item 9: the forbidden listener is never connected to --------------------------------

SPELLINGS = [  # every one of these is 127.0.0.2
    "127.0.0.2", "2130706434", "0177.0.0.02", "0x7f000002", "0x7f.0.0.2", "127.2",
    "127.0.0.2.", "[::ffff:127.0.0.2]", "[::ffff:7f00:2]", "①②⑦.0.0.②", "loopback.test",
    "several.test",
]  # fmt: skip
CLIENT_REFUSES = {"2130706434", "0177.0.0.02", "127.2", "127.0.0.2."}
DNS = {"loopback.test": [[FORBIDDEN]], "several.test": [["127.0.0.9", FORBIDDEN]]}


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("host", SPELLINGS)
async def test_no_spelling_of_a_forbidden_address_is_connected_to(
    listener: tuple[Listener, int], host: str, scheme: str
) -> None:
    forbidden, port = listener
    sink = webhook(f"{scheme}://{host}:{port}/hook", max_retries=1)
    outcome = await deliver(sink, RECEIVERS, FakeDNS({k: list(v) for k, v in DNS.items()}))
    assert await forbidden.others_than_marker() == []
    assert outcome.results["ok"] == 0 and outcome.results["refused"] == 1
    assert outcome.failures[0].refused


@pytest.mark.parametrize("host", SPELLINGS)
async def test_each_spelling_does_reach_the_listener_once_allowlisted(
    listener: tuple[Listener, int], host: str
) -> None:
    """The control: the spellings above really point at the listener.

    aiohttp (3.13 on) refuses the digits-only legacy forms itself, so for those the control
    is what the C library (and so any other client) makes of them."""
    forbidden, port = listener
    if host in CLIENT_REFUSES:
        assert socket.inet_ntoa(socket.inet_aton(host.rstrip("."))) == FORBIDDEN
        return
    allow = DestinationPolicy((ip_network(f"{FORBIDDEN}/32"),))
    await deliver(webhook(f"http://{host}:{port}/hook"), allow, FakeDNS(dict(DNS)))
    assert len(await forbidden.others_than_marker()) >= 1


@pytest.mark.parametrize("host", ["[::1]", "[0:0:0:0:0:0:0:1]", "six.test"])
async def test_ipv6_loopback_is_never_connected_to(host: str) -> None:
    forbidden = Listener()
    port = await forbidden.start("::1")
    try:
        dns = FakeDNS({"six.test": [["::1"]]})
        outcome = await deliver(webhook(f"https://{host}:{port}/"), RECEIVERS, dns)
        assert await forbidden.others_than_marker() == []
        assert outcome.results["refused"] == 1
        allow = DestinationPolicy((ip_network("::1"),))
        await deliver(webhook(f"http://{host}:{port}/"), allow, dns)  # the control
        assert len(await forbidden.others_than_marker()) >= 1
    finally:
        await forbidden.close()


async def test_dns_rebinding_between_attempts_never_reaches_the_listener(
    receiver: tuple[Receiver, int],
) -> None:
    """First lookup: the allowed receiver (which fails, closing the connection); then the
    forbidden address on the same port."""
    allowed, port = receiver
    forbidden = Listener()
    await forbidden.start(FORBIDDEN, port)
    try:
        allowed.answers = [web.Response(status=503, headers={"Connection": "close"})]
        dns = FakeDNS({"flip.test": [["127.0.0.1"], [FORBIDDEN], [FORBIDDEN]]})
        outcome = await deliver(webhook(f"http://flip.test:{port}/", max_retries=2), RECEIVERS, dns)
        assert len(allowed.requests) == 1 and dns.lookups.count("flip.test") >= 2
        assert await forbidden.others_than_marker() == []
        assert outcome.results["ok"] == 0
    finally:
        await forbidden.close()


async def test_a_name_with_forbidden_and_allowed_answers_reaches_only_the_allowed(
    receiver: tuple[Receiver, int],
) -> None:
    allowed, port = receiver
    forbidden = Listener()
    await forbidden.start(FORBIDDEN, port)
    try:
        dns = FakeDNS({"both.test": [[FORBIDDEN, "127.0.0.1"]]})
        outcome = await deliver(webhook(f"http://both.test:{port}/"), RECEIVERS, dns)
        assert outcome.results["ok"] == 1 and len(allowed.requests) == 1
        assert await forbidden.others_than_marker() == []
    finally:
        await forbidden.close()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirects_are_never_followed(
    receiver: tuple[Receiver, int], listener: tuple[Listener, int], code: int
) -> None:
    allowed, port = receiver
    forbidden, forbidden_port = listener
    for target in (f"http://{FORBIDDEN}:{forbidden_port}/", f"http://127.0.0.1:{port}/moved"):
        allowed.answers = [web.Response(status=code, headers={"Location": target})]
        outcome = await deliver(webhook(f"http://127.0.0.1:{port}/hook"), RECEIVERS)
        assert outcome.results["ok"] == 0 and outcome.results["failed"] == 1
    assert len(allowed.requests) == 2  # the two first requests; never the redirect targets
    assert await forbidden.others_than_marker() == []


async def test_an_allowlisted_receiver_still_gets_the_alert(
    receiver: tuple[Receiver, int],
) -> None:
    allowed, port = receiver
    outcome = await deliver(webhook(f"http://127.0.0.1:{port}/hook"), RECEIVERS)
    assert outcome.results["ok"] == 1 and outcome.failures == []
    assert json.loads(allowed.requests[0][0])["violation"]["id"] == "v1"


# -- item 9: refused as written, whatever the allowlist ---------------------------------

NEVER = [
    "http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/", "https://2852039166/",
    "https://[::ffff:169.254.169.254]/", "https://[64:ff9b::a9fe:a9fe]/", "https://169.254.170.2/",
    "https://[fd00:ec2::254]/", "https://100.100.100.200/", "https://metadata.google.internal/",
    "https://METADATA.Google.Internal./", "https://169.254.1.1/", "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/", "https://0.0.0.0/", "https://0/", "https://[::]/",
    "https://224.0.0.1/", "https://[ff02::1]/",
]  # fmt: skip
UNLESS_ALLOWLISTED = [
    "https://127.0.0.1/", "https://[::1]/", "https://0x7f000001/", "https://[::127.0.0.1]/",
    "https://10.0.0.1/", "https://172.16.0.1/", "https://192.168.1.1/", "https://100.64.0.1/",
    "https://[fc00::1]/", "https://[fd12:3456::1]/", "https://240.0.0.1/",
    "https://255.255.255.255/", "https://[2002:a00:1::]/", "http://93.184.216.34/",
]  # fmt: skip
EVERYTHING = DestinationPolicy((ip_network("0.0.0.0/0"), ip_network("::/0")))


@pytest.mark.parametrize("url", NEVER)
def test_metadata_link_local_unspecified_and_multicast_are_refused_even_if_allowlisted(
    url: str,
) -> None:
    assert DestinationPolicy().url_refusal(url) is not None
    assert EVERYTHING.url_refusal(url) is not None


@pytest.mark.parametrize("url", UNLESS_ALLOWLISTED)
def test_loopback_private_and_plain_http_are_refused_unless_allowlisted(url: str) -> None:
    assert DestinationPolicy().url_refusal(url) is not None
    assert EVERYTHING.url_refusal(url) is None


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "https:///x", "x"])
def test_only_http_urls_with_a_host(url: str) -> None:
    assert EVERYTHING.url_refusal(url) is not None


async def test_a_refusal_as_written_names_the_field_and_rule_and_sends_nothing() -> None:
    dns = FakeDNS({})
    sink = webhook("https://169.254.169.254/latest/", max_retries=5)
    outcome = await deliver(sink, EVERYTHING, dns)
    assert outcome.results["refused"] == 1 and outcome.failures[0].attempts == 0
    text = failure_message(sink, outcome.failures[0])
    assert text.startswith("alert to webhook sink hook refused by destination policy: spec.url ")
    assert METADATA in text and "169.254" not in text and dns.lookups == []
    secret_url = "http://8.8.8.8/T0/B0/secret"
    secret = ResolvedSink("s", "slack", secret_url, url_field="spec.urlSecretRef")
    refused = await deliver(secret, DestinationPolicy())
    message = failure_message(secret, refused.failures[0])
    assert "spec.urlSecretRef " + PLAIN_HTTP in message
    assert "8.8.8.8" not in message and "B0" not in message  # the Secret's URL is not told


PRIVATE_NETWORKS = [ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
PRIVATE_NETWORKS += [ip_network(n) for n in ("100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16")]


def in_network(network: IPv4Network) -> st.SearchStrategy[IPv4Address]:
    first = int(network.network_address)
    return st.integers(first, first + network.num_addresses - 1).map(IPv4Address)


def spellings(address: IPv4Address) -> list[str]:
    value = int(address)
    return [str(address), str(value), hex(value), f"[::ffff:{address}]", f"{address}.",
            ".".join(f"0{int(octet):o}" for octet in str(address).split(".")),
            f"[64:ff9b::{value >> 16:x}:{value & 0xFFFF:x}]"]  # fmt: skip


@given(st.sampled_from(PRIVATE_NETWORKS).flatmap(in_network))
def test_every_spelling_of_every_internal_address_is_refused(address: IPv4Address) -> None:
    for spelling in spellings(address):
        for scheme in ("http", "https"):
            assert DestinationPolicy().url_refusal(f"{scheme}://{spelling}:8080/") is not None


@given(
    st.integers(0, 2**32 - 1)
    .map(IPv4Address)
    .filter(lambda a: a.is_global and not a.is_multicast)  # Python counts 224/4 as global
)
def test_public_addresses_need_https_and_no_allowlist(address: IPv4Address) -> None:
    policy = DestinationPolicy((ip_network("10.0.0.0/8"),))
    expected = METADATA if address == IPv4Address("168.63.129.16") else None
    assert policy.url_refusal(f"https://{address}/") == expected
    assert policy.url_refusal(f"http://{address}/") is not None


# -- item 9: no oracle in Events, logs, attempts or timing -------------------------------


async def test_failures_read_alike_whatever_is_at_the_destination(
    receiver: tuple[Receiver, int], caplog: pytest.LogCaptureFixture
) -> None:
    allowed, port = receiver
    silent = Listener()  # accepts, never answers: a filtered-looking port
    silent._accepted = _hold  # type: ignore[method-assign]
    silent_port = await silent.start("127.0.0.1")
    closed = Listener()
    closed_port = await closed.start("127.0.0.1")
    await closed.close()  # nothing listens there any more
    cases = {
        "closed": f"http://127.0.0.1:{closed_port}/",
        "status500": f"http://127.0.0.1:{port}/a",
        "status404": f"http://127.0.0.1:{port}/b",
        "redirect": f"http://127.0.0.1:{port}/c",
        "silent": f"http://127.0.0.1:{silent_port}/",
        "tls": f"https://127.0.0.1:{port}/",
        "nxdomain": f"http://nowhere.test:{port}/",
        "internal": f"http://internal.test:{port}/",
    }
    answers = {"status500": 500, "status404": 404, "redirect": 307}
    messages, logs = set(), set()
    try:
        for name, url in cases.items():
            code = answers.get(name)
            allowed.answers = [web.Response(status=code or 200, headers={"Location": "/x"})] * 3
            sink = webhook(url, name=name, timeout_seconds=0.3, max_retries=2)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="promethios.ingest"):
                out = await deliver(sink, RECEIVERS, FakeDNS({"internal.test": [["10.0.0.5"]]}))
            assert out.results["ok"] == 0, name
            assert out.results["refused" if name == "internal" else "failed"] == 1, name
            messages.add(failure_message(sink, out.failures[0]).replace(name, "X"))
            logs.update(r.getMessage().replace(name, "X") for r in caplog.records)
            worst = worst_case_seconds(sink, backoff=1.0, cap=60.0)
            assert sum(out.sleeps) + out.seconds >= worst - 0.05, (name, out.sleeps, worst)
    finally:
        await silent.close()
    assert messages == {"alert to webhook sink X failed after 3 attempts"}
    assert len(logs) == 1 and not re.search(r"\d{3,}|HTTP|rror|refused|timeout", logs.pop())


async def _hold(reader: Any, writer: Any) -> None:
    await reader.read()  # until the client gives up
