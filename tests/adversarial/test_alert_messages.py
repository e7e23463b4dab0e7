"""Alert bodies as the attacker's tool (issue 10, item 11).

The governed agent writes the violation's type and description; those go into Slack mrkdwn,
a PagerDuty summary and a signed webhook body. It tries to:

- ping a whole Slack channel (``<!channel>``), a user, or disguise a link
  (``<https://evil|click>``) with what it writes;
- forge extra lines in a PagerDuty summary;
- and whoever captured one signed webhook delivery tries to get it accepted again later.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from alert_sink_harness import ALERT, Receiver, deliver
from hypothesis import given
from hypothesis import strategies as st

from promethios.ingest.alertformat import (
    Alert,
    ResolvedSink,
    build_request,
    pagerduty_body,
    slack_body,
    summary_line,
    verify_signature,
)
from promethios.ingest.destinations import DestinationPolicy

RECEIVERS = DestinationPolicy((ip_network("127.0.0.1/32"),))


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    allowed = Receiver()
    port = await allowed.start()
    yield allowed, port
    await allowed.close()


def webhook(url: str, **values: Any) -> ResolvedSink:
    return ResolvedSink("hook", "webhook", url, max_retries=0, **values)


# -- item 11: Slack text is inert; PagerDuty is one line ---------------------------------

HOSTILE = "<!channel> <!here> <@U123> <#C42> <!subteam^S1> <https://evil.example|click> &amp;"


def mrkdwn_texts(body: bytes) -> list[str]:
    message = json.loads(body)
    texts = [message["text"]]
    for block in message["blocks"]:
        for item in [block.get("text"), *block.get("fields", [])]:
            if item and item["type"] == "mrkdwn":
                assert item.get("verbatim") is True
                texts.append(item["text"])
    return texts


def slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


async def test_mentions_and_disguised_links_arrive_inert(receiver: tuple[Receiver, int]) -> None:
    allowed, port = receiver
    alert = Alert("team-a", "support-bot", "v1", f"type{HOSTILE}", "critical", HOSTILE, "t", 0.4)
    sink = ResolvedSink("chat", "slack", f"http://127.0.0.1:{port}/T/B/x", max_retries=0)
    outcome = await deliver(sink, RECEIVERS, alert=alert)
    assert outcome.results["ok"] == 1
    body = allowed.requests[0][0]
    assert json.loads(body)["unfurl_links"] is False
    for text in mrkdwn_texts(body):
        assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in json.loads(body)["text"]
    assert "&amp;amp;" in json.loads(body)["text"]  # the agent's own entity is not decoded


@given(st.text(max_size=200), st.text(max_size=60))
def test_any_agent_text_is_inert_in_slack(description: str, vtype: str) -> None:
    alert = Alert("ns", "bot", "v1", vtype, "high", description, "t", 0.5)
    texts = mrkdwn_texts(slack_body(alert))
    for text in texts:
        assert "<" not in text and ">" not in text
        assert re.sub(r"&(amp|lt|gt);", "", text).count("&") == 0
    assert slack_unescape(texts[0]) == summary_line(alert)  # escaped, not altered


@given(st.text(max_size=300))
def test_the_pagerduty_summary_is_one_line(description: str) -> None:
    alert = Alert("ns", "bot", "v1", "pii\n[CRITICAL] forged", "high", description, "t", 0.5)
    summary = json.loads(pagerduty_body(alert, "key"))["payload"]["summary"]
    assert "\n" not in summary and "\r" not in summary and "\u2028" not in summary
    assert summary.startswith("[HIGH] pii [CRITICAL] forged violation by ns/bot")


# -- item 11: signed deliveries cannot be replayed ---------------------------------------

SECRET = b"receiver-secret"


async def test_a_captured_delivery_is_refused_after_the_tolerance(
    receiver: tuple[Receiver, int],
) -> None:
    allowed, port = receiver
    sink = webhook(f"http://127.0.0.1:{port}/hook", signing_secret=SECRET)
    await deliver(sink, RECEIVERS)
    body, headers = allowed.requests[0]
    header = headers["X-Promethios-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    now = time.time()
    assert verify_signature(body, SECRET, header, now)
    assert not verify_signature(body, SECRET, header, now + 301)  # replayed later
    assert not verify_signature(body, SECRET, header, now - 301)  # from the future
    stamp = int(header[2:].split(",")[0])
    moved = header.replace(f"t={stamp}", f"t={stamp + 600}")
    assert not verify_signature(body, SECRET, moved, now + 600)  # a fresh t, an old signature
    assert not verify_signature(body + b" ", SECRET, header, now)
    assert not verify_signature(body, b"other", header, now)


def test_every_attempt_is_signed_at_its_own_time() -> None:
    sink = webhook("https://example.com/", signing_secret=SECRET)
    _, first, body = build_request(sink, ALERT, 1_700_000_000.0)
    _, later, _ = build_request(sink, ALERT, 1_700_000_400.0)
    assert first["X-Promethios-Signature"].startswith("t=1700000000,")
    assert verify_signature(body, SECRET, later["X-Promethios-Signature"], 1_700_000_400.0)
    assert not verify_signature(body, SECRET, first["X-Promethios-Signature"], 1_700_000_400.0)


@pytest.mark.parametrize(
    "header",
    ["", "t=,v1=", "v1=abc", "t=1700000000", "t=abc,v1=00", "t=1e9,v1=00", "t=-1,v1=00",
     "t=1700000000,t=1700000000,v1=00", "t=" + "9" * 5000 + ",v1=00", "t=1700000000,v1=é"],
)  # fmt: skip
def test_malformed_signature_headers_are_refused_not_raised(header: str) -> None:
    assert verify_signature(b"{}", SECRET, header, 1_700_000_000.0) is False


def test_verification_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    sink = webhook("https://example.com/", signing_secret=SECRET)
    _, headers, body = build_request(sink, ALERT, 1_700_000_000.0)
    assert verify_signature(body, SECRET, headers["X-Promethios-Signature"], 1_700_000_000.0)
    assert len(calls) == 1


def readme_verifier() -> Any:
    """The ``verify`` function of README's "Verifying webhook signatures", as printed there."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Verifying webhook signatures", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the documented copy, verbatim
    return namespace["verify"]


async def test_the_readme_verifier_accepts_a_delivery_and_refuses_its_replay(
    receiver: tuple[Receiver, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    verify = readme_verifier()
    allowed, port = receiver
    await deliver(webhook(f"http://127.0.0.1:{port}/hook", signing_secret=SECRET), RECEIVERS)
    body, headers = allowed.requests[0]
    header = headers["X-Promethios-Signature"]
    assert verify(body, SECRET, header)
    assert not verify(body + b"x", SECRET, header) and not verify(body, b"other", header)
    later = time.time() + 301
    monkeypatch.setattr(time, "time", lambda: later)
    assert not verify(body, SECRET, header)  # the same delivery, replayed later
