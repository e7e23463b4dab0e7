"""Authentication and authorisation decisions: TokenReview and SubjectAccessReview, cached.

- Login and the summary API's bearer tokens are authenticated with a TokenReview; an API
  token's answer is remembered for :data:`TOKEN_TTL` seconds under its SHA-256 (never the
  token), a session re-reviews its token every :data:`REVIEW_EVERY` seconds.
- What a viewer sees: the namespaces where a SubjectAccessReview allows ``get`` on
  ``governedagents`` (one cluster-wide question first: if it is allowed everywhere, one
  review answers for every namespace). Policies and AlertSinks are shown where ``get`` on
  them is allowed as well. The two actions need ``patch`` on ``governedagents``.
- Answers are cached per identity and question for :data:`ACCESS_TTL` seconds, so a
  revoked RoleBinding takes effect within that time; a failed review counts as denied.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from ..kube import access as kaccess
from ..kube.access import Access, Identity
from ..kube.client import Client

log = logging.getLogger(__name__)

ACCESS_TTL = 30.0
TOKEN_TTL = 60.0
REVIEW_EVERY = 300.0
MAX_ENTRIES = 50_000
AGENTS, POLICIES, SINKS = "governedagents", "governancepolicies", "alertsinks"


class Reviewer(Protocol):
    """Asks the API server (the real one) or a test's table (fakes)."""

    async def review_token(self, token: str) -> Identity | None: ...

    async def review_access(self, identity: Identity, access: Access) -> bool: ...


class KubeReviewer:
    """TokenReview / SubjectAccessReview with the process's identity, off the event loop."""

    def __init__(self, api: Client) -> None:
        self._api = api

    async def review_token(self, token: str) -> Identity | None:
        """Authenticate a token."""
        return await asyncio.to_thread(kaccess.review_token, self._api, token)

    async def review_access(self, identity: Identity, access: Access) -> bool:
        """Authorise one request."""
        return await asyncio.to_thread(kaccess.review_access, self._api, identity, access)


class Authorizer:
    """Cached decisions over a :class:`Reviewer`."""

    def __init__(
        self,
        reviewer: Reviewer,
        clock: Callable[[], float],
        access_ttl: float = ACCESS_TTL,
        token_ttl: float = TOKEN_TTL,
    ) -> None:
        self.reviewer = reviewer
        self._clock = clock
        self._access_ttl = access_ttl
        self._token_ttl = token_ttl
        self._answers: dict[tuple[Identity, Access], tuple[bool, float]] = {}
        self._tokens: dict[str, tuple[Identity | None, float]] = {}
        self.reviews = 0
        """SubjectAccessReviews made (tests and the benchmark read it)."""

    async def authenticate(self, token: str, cache: bool = False) -> Identity | None:
        """The token's user, or None; with ``cache`` the answer is kept for a minute."""
        now = self._clock()
        digest = hashlib.sha256(token.encode()).hexdigest()
        if cache:
            hit = self._tokens.get(digest)
            if hit is not None and now - hit[1] < self._token_ttl:
                return hit[0]
        try:
            identity = await self.reviewer.review_token(token)
        except Exception as error:
            log.warning("TokenReview failed: %s", type(error).__name__)
            return None
        if cache:
            if len(self._tokens) >= MAX_ENTRIES:
                self._tokens.clear()
            self._tokens[digest] = (identity, now)
        return identity

    async def may(self, identity: Identity, access: Access) -> bool:
        """Whether ``identity`` may do ``access`` (cached for the TTL)."""
        now = self._clock()
        hit = self._answers.get((identity, access))
        if hit is not None and now - hit[1] < self._access_ttl:
            return hit[0]
        self.reviews += 1
        try:
            allowed = await self.reviewer.review_access(identity, access)
        except Exception as error:
            log.warning(
                "SubjectAccessReview for %s failed (%s): denied",
                identity.username,
                type(error).__name__,
            )
            return False
        if len(self._answers) >= MAX_ENTRIES:
            self._answers.clear()
        self._answers[(identity, access)] = (allowed, now)
        return allowed

    async def visible(
        self, identity: Identity, namespaces: Iterable[str], resource: str = AGENTS
    ) -> set[str]:
        """The namespaces among ``namespaces`` where ``identity`` may ``get`` ``resource``."""
        candidates = sorted(set(namespaces))
        if not candidates:
            return set()
        if await self.may(identity, Access("get", resource, "")):
            return set(candidates)  # allowed in every namespace
        answers = await asyncio.gather(
            *(self.may(identity, Access("get", resource, ns)) for ns in candidates)
        )
        return {ns for ns, allowed in zip(candidates, answers, strict=True) if allowed}

    async def may_patch_agent(self, identity: Identity, namespace: str, name: str) -> bool:
        """The two actions' check: ``patch`` on this GovernedAgent."""
        return await self.may(identity, Access("patch", AGENTS, namespace, name=name))
