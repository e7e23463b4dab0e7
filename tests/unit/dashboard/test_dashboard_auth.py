"""Sessions (sealed token, expiry, CSRF), TokenReview/SubjectAccessReview decisions, cache."""

from __future__ import annotations

import base64
import json

import pytest
from dashboard_fakes import T0, FakeReviewer, agent_object

from promethios.dashboard.authz import Authorizer
from promethios.dashboard.cache import TREND_POINTS, FleetCache
from promethios.dashboard.sessions import (
    SessionStore,
    TokenRefused,
    check_token,
    same_token,
    seal,
    token_expiry,
    unseal,
)
from promethios.kube.access import Access, Identity, access_review_body, identity_from_review

ALICE = Identity("alice", uid="u1", groups=("dev",))
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLWEtdG9rZW4"


def jwt(exp: float) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.sig"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


# -- sessions -------------------------------------------------------------------------------


def test_the_token_is_never_kept_in_clear() -> None:
    pad, sealed = seal(TOKEN)
    assert unseal(pad, sealed) == TOKEN and TOKEN.encode() not in sealed
    store = SessionStore()
    cookie, session = store.create(ALICE, TOKEN, T0)
    kept = [repr(vars(session)), repr(store._sessions)]  # everything the server holds
    assert not any(TOKEN in text or TOKEN.encode().hex() in text for text in kept)
    assert TOKEN not in cookie  # the cookie holds the pad, not the token
    found = store.lookup(cookie, T0 + 1)
    assert found is not None and found[1] == TOKEN and found[0].identity == ALICE


def test_forged_tampered_and_ended_cookies_find_nothing() -> None:
    store = SessionStore()
    cookie, _ = store.create(ALICE, TOKEN, T0)
    raw = bytearray(base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4)))
    raw[0] ^= 1  # another session id
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (None, "", "!!!", "AAAA", forged):
        assert store.lookup(bad, T0) is None
    store.end(cookie)
    assert store.lookup(cookie, T0) is None and len(store) == 0


def test_sessions_end_at_the_token_exp_when_idle_and_when_bounded() -> None:
    store = SessionStore(max_sessions=2, lifetime=8 * 3600, idle=600)
    short, _ = store.create(ALICE, jwt(T0 + 60), T0)
    assert store.lookup(short, T0 + 59) is not None and store.lookup(short, T0 + 61) is None
    idle, _ = store.create(ALICE, TOKEN, T0)
    assert store.lookup(idle, T0 + 500) is not None
    assert store.lookup(idle, T0 + 1101) is None  # 601 s after the last request
    first, _ = store.create(ALICE, TOKEN, T0)
    store.create(ALICE, TOKEN, T0)
    store.create(ALICE, TOKEN, T0)
    assert store.lookup(first, T0) is None and len(store) == 2  # the oldest went first
    assert token_expiry("not-a-jwt") is None and token_expiry(jwt(123)) == 123


def test_token_input_and_csrf_comparison() -> None:
    assert check_token("  Bearer abc.def  ") == "abc.def"
    for bad, why in (("", "kubectl create token"), ("a b", "spaces"), ("x" * 3000, "longer")):
        with pytest.raises(TokenRefused, match=why):
            check_token(bad)
    assert same_token("abc", "abc") and not same_token("abc", "abd")
    assert not same_token("abc", None) and not same_token("abc", "")


# -- reviews -------------------------------------------------------------------------------


def test_review_bodies_and_answers() -> None:
    body = access_review_body(ALICE, Access("patch", "governedagents", "ns", name="bot"))
    attributes = body["spec"]["resourceAttributes"]
    assert body["spec"]["user"] == "alice" and body["spec"]["groups"] == ["dev"]
    assert attributes == {"verb": "patch", "group": "governance.promethios.ai",
                          "resource": "governedagents", "namespace": "ns",
                          "name": "bot"}  # fmt: skip
    assert identity_from_review({"authenticated": False, "user": {"username": "x"}}) is None
    who = identity_from_review(
        {"authenticated": True,
         "user": {"username": "system:serviceaccount:a:b", "groups": ["g"], "extra": {"k": ["v"]}}}
    )  # fmt: skip
    assert who is not None and who.extra == (("k", ("v",)),)


async def test_visible_namespaces_cluster_wide_shortcut_and_caching() -> None:
    clock = Clock()
    reviewer = FakeReviewer(allowed={("alice", "get", "governedagents", "a")})
    authz = Authorizer(reviewer, clock, access_ttl=30)
    assert await authz.visible(ALICE, ["a", "b", "c"]) == {"a"}
    reviews = len(reviewer.access_reviews)
    assert reviews == 4  # cluster-wide, then one per namespace
    assert await authz.visible(ALICE, ["a", "b", "c"]) == {"a"}
    assert len(reviewer.access_reviews) == reviews  # cached
    reviewer.allowed = {("alice", "get", "governedagents", "")}  # a ClusterRoleBinding
    clock.now += 31
    assert await authz.visible(ALICE, ["a", "b", "c"]) == {"a", "b", "c"}
    assert len(reviewer.access_reviews) == reviews + 1
    reviewer.fail = True
    clock.now += 31
    assert await authz.visible(ALICE, ["a"]) == set()  # a failed review denies
    assert not await authz.may_patch_agent(ALICE, "a", "bot")


async def test_api_tokens_are_cached_by_digest_for_a_minute() -> None:
    clock = Clock()
    reviewer = FakeReviewer(tokens={TOKEN: "alice"})
    authz = Authorizer(reviewer, clock)
    for _ in range(3):
        assert (await authz.authenticate(TOKEN, cache=True)) is not None
    assert reviewer.token_reviews == 1
    assert all(TOKEN not in key for key in authz._tokens)
    clock.now += 61
    reviewer.tokens.clear()  # revoked
    assert await authz.authenticate(TOKEN, cache=True) is None
    reviewer.fail = True
    assert await authz.authenticate("other") is None


# -- cache ------------------------------------------------------------------------------------


def test_cache_sync_events_and_trend() -> None:
    cache = FleetCache()
    cache.expected = {("GovernedAgent", "a"), ("GovernedAgent", "b")}
    cache.apply("GovernedAgent", "a", "SYNC", {"items": [agent_object("a", "x")]})
    cache.apply("GovernedAgent", "b", "SYNC", {"items": [agent_object("b", "y")]})
    assert cache.ready and set(cache.agents) == {"a/x", "b/y"}
    cache.apply("GovernedAgent", "a", "SYNC", {"items": []})  # x went while not watching
    assert set(cache.agents) == {"b/y"}  # b's agent is untouched by a's re-list
    for i in range(TREND_POINTS + 5):
        cache.apply("GovernedAgent", "b", "MODIFIED", agent_object("b", "y", trust=i / 100))
    assert len(cache.trends["b/y"]) == TREND_POINTS and cache.trends["b/y"][-1] == 0.52
    cache.apply("GovernedAgent", "b", "MODIFIED", {"metadata": {"name": "z"}, "status": []})
    assert set(cache.agents) == {"b/y"}  # a malformed object is skipped
    cache.apply("GovernedAgent", "b", "DELETED", agent_object("b", "y"))
    assert not cache.agents and not cache.trends and cache.namespaces() == set()
