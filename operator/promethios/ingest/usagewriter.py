"""Budget usage writes: lease operations applied to the stored ledgers, written conditionally.

Per owner object (a GovernedAgent or a GovernancePolicy, see :mod:`.budgetcatalog`),
operations queue and one write runs at a time. Before each attempt, the stored
``status.usage`` (the watch's latest, or a GET after a 409) is decoded, put under the
current spec (:func:`.ledger.conform`), every queued operation applied to it in order
(:func:`.ledger.apply`), and the result written with the stored resourceVersion as a
precondition (server-side apply of ``status.usage`` only, field manager
``promethios-budgets``). A 409 means another replica wrote first: read again, apply again.
Operations queued while a write runs go into the next one, so a burst costs one write.

A caller is answered only once the write carrying its operation succeeded: a granted lease
is always on record before the sidecar can spend it, so no restart of an ingest replica
can hand out the same allowance twice. Thresholds a write crosses are acted on only after
it succeeded; writes being conditional, exactly one replica marks each threshold alerted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..api.budget import Budget
from .agents import AgentConfig
from .budgetcatalog import BudgetCatalog, Owner, PolicyBudgets
from .ledger import LeaseOp, LeaseOutcome, Ledger, apply, conform, crossed
from .merge import newer
from .usagecodec import decode_usage, encode_usage
from .writer import StatusWriteError, WriteResult

log = logging.getLogger(__name__)
CONFLICT_ATTEMPTS = 8
CONFLICT_PAUSE = 0.02


class UsageStore(Protocol):
    """Reads an owner object and writes its ``status.usage`` conditionally."""

    async def read_owner(self, owner: Owner) -> dict[str, Any] | None: ...

    async def write_usage_if(
        self, owner: Owner, usage: dict[str, Any], resource_version: str
    ) -> WriteResult: ...


CrossedHook = Callable[[Owner, Ledger, Budget, PolicyBudgets, list[int], AgentConfig | None], None]
ResultHook = Callable[[str], None]


@dataclass
class Queued:
    """One lease operation waiting for its write."""

    budget: str
    op: LeaseOp
    future: asyncio.Future[LeaseOutcome | None]
    agent: AgentConfig | None


@dataclass
class OwnerBook:
    """What one replica knows of one owner object and what it waits to write there."""

    owner: Owner
    resource_version: str | None = None
    usage: Any = None
    agent_policy: str | None = None
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    queued: list[Queued] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    roll: bool = False


class UsageWriter:
    """Owner books and their writes; one per ingest process."""

    def __init__(
        self,
        store: UsageStore,
        catalog: BudgetCatalog,
        clock: Callable[[], float],
        on_crossed: CrossedHook | None = None,
        on_result: ResultHook | None = None,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._on_crossed = on_crossed
        self._on_result = on_result or (lambda result: None)
        self.books: dict[Owner, OwnerBook] = {}

    def observe(
        self, owner: Owner, version: str, usage: Any, agent_policy: str | None = None
    ) -> None:
        """The owner's ``status.usage`` at resourceVersion ``version`` (a watch event, a GET,
        a write's answer); ``agent_policy``: a GovernedAgent's policy name."""
        book = self.books.get(owner)
        if book is None:
            if not usage and agent_policy is None and owner.kind == "GovernedAgent":
                return  # an agent without budgets costs nothing here
            book = self.books[owner] = OwnerBook(owner)
        book.agent_policy = agent_policy or book.agent_policy
        if book.resource_version and version and not newer(version, book.resource_version):
            return
        book.resource_version = version or None
        book.usage = usage
        book.ledgers = decode_usage(usage)

    def observe_object(self, owner: Owner, obj: dict[str, Any]) -> None:
        """:meth:`observe` for a whole object body."""
        metadata = obj.get("metadata") or {}
        policy = None
        if owner.kind == "GovernedAgent":
            ref = ((obj.get("spec") or {}).get("governance") or {}).get("policyRef") or {}
            policy = ref.get("name")
        self.books.setdefault(owner, OwnerBook(owner))  # kept: this object was asked for
        usage = (obj.get("status") or {}).get("usage")
        self.observe(owner, str(metadata.get("resourceVersion") or ""), usage, policy)

    def forget(self, owner: Owner) -> None:
        """The owner object was deleted."""
        book = self.books.pop(owner, None)
        if book is not None:
            for item in book.queued:
                if not item.future.done():
                    item.future.set_exception(StatusWriteError("gone"))

    async def submit(
        self,
        owner: Owner,
        items: list[tuple[str, LeaseOp]],
        agent: AgentConfig | None,
        timeout: float,  # noqa: ASYNC109 - the caller's deadline, passed on to asyncio.timeout
    ) -> list[LeaseOutcome | None]:
        """Queue operations on ``owner``'s budgets; their outcomes once written (None: the
        owner keeps no such budget). StatusWriteError if the write fails or times out."""
        book = self.books.setdefault(owner, OwnerBook(owner))
        if agent is not None and owner.kind == "GovernedAgent":
            book.agent_policy = agent.governance.policy_ref.name
        loop = asyncio.get_running_loop()
        queued = [Queued(name, op, loop.create_future(), agent) for name, op in items]
        book.queued.extend(queued)
        self._start(book)
        try:
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*(asyncio.shield(q.future) for q in queued)))
        except TimeoutError as error:
            raise StatusWriteError("budget usage write timed out") from error

    def roll_due(self) -> None:
        """Write the owners whose stored window has ended (usage shown reset)."""
        now = self._clock()
        for book in list(self.books.values()):
            if book.task is None and any(ledger.end <= now for ledger in book.ledgers.values()):
                book.roll = True
                self._start(book)

    async def idle(self) -> None:
        """Return once no write is in flight (tests)."""
        while tasks := [b.task for b in self.books.values() if b.task is not None]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel in-flight writes."""
        tasks = [b.task for b in self.books.values() if b.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _start(self, book: OwnerBook) -> None:
        if book.task is None:
            book.task = asyncio.get_running_loop().create_task(self._run(book))

    async def _run(self, book: OwnerBook) -> None:
        try:
            while book.queued or book.roll:
                items, book.queued, book.roll = book.queued, [], False
                try:
                    await self._write(book, items)
                except Exception as error:  # every waiter fails; the sidecars retry
                    self._on_result("error")
                    log.warning("budget usage write for %s %s/%s failed: %s",
                                *book.owner, error)  # fmt: skip
                    for item in items:
                        if not item.future.done():
                            item.future.set_exception(StatusWriteError(str(error)))
        finally:
            book.task = None

    async def _write(self, book: OwnerBook, items: list[Queued]) -> None:
        owner = book.owner
        for attempt in range(CONFLICT_ATTEMPTS):
            if book.resource_version is None or attempt:
                obj = await self._store.read_owner(owner)
                if obj is None:
                    raise StatusWriteError(f"{owner.kind} {owner.namespace}/{owner.name} is gone")
                self.observe_object(owner, obj)
            assert book.resource_version is not None
            now = self._clock()
            policy, budgets = self._catalog.kept_by(owner, book.agent_policy)
            ledgers = _current(book.ledgers, budgets, policy, now)
            outcomes = [self._apply(ledgers, policy, item, now) for item in items]
            alerts = [(ledger, b, crossed(ledger, b.alert_thresholds))
                      for b in budgets if (ledger := ledgers.get(b.name)) is not None]  # fmt: skip
            body = encode_usage(ledgers.values(), now)
            result = await self._store.write_usage_if(owner, body, book.resource_version)
            if result.code == 409:
                self._on_result("conflict")
                await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE * (attempt + 1)))
                continue
            if result.code >= 300:
                raise StatusWriteError(f"budget usage write answered {result.code}")
            self._on_result("ok")
            self._written(book, result, body, ledgers)
            for item, outcome in zip(items, outcomes, strict=True):
                if not item.future.done():
                    item.future.set_result(outcome)
            self._alert(owner, policy, alerts, items)
            return
        raise StatusWriteError(f"budget usage write conflicted {CONFLICT_ATTEMPTS} times")

    @staticmethod
    def _apply(
        ledgers: dict[str, Ledger], policy: PolicyBudgets | None, item: Queued, now: float
    ) -> LeaseOutcome | None:
        ledger = ledgers.get(item.budget)
        if ledger is None or policy is None:
            return None
        return apply(ledger, item.op, policy.pricing, now)

    def _written(
        self, book: OwnerBook, result: WriteResult, body: dict[str, Any], ledgers: dict[str, Ledger]
    ) -> None:
        if result.obj is not None:
            self.observe_object(book.owner, result.obj)
        else:  # a store that does not answer the object: re-read before the next write
            book.resource_version, book.usage = None, body
            book.ledgers = dict(ledgers)

    def _alert(
        self,
        owner: Owner,
        policy: PolicyBudgets | None,
        alerts: list[tuple[Ledger, Budget, list[int]]],
        items: list[Queued],
    ) -> None:
        if self._on_crossed is None or policy is None:
            return
        for ledger, budget, thresholds in alerts:
            if thresholds:
                agent = next((i.agent for i in items if i.budget == budget.name), None)
                self._on_crossed(owner, ledger, budget, policy, thresholds, agent)


def _current(
    stored: dict[str, Ledger],
    budgets: tuple[Budget, ...],
    policy: PolicyBudgets | None,
    now: float,
) -> dict[str, Ledger]:
    """Fresh copies of the stored ledgers under the current spec; budgets no longer in the
    spec are dropped. Copies: a failed attempt must leave the stored view untouched."""
    if policy is None:
        return {}
    fresh = copy.deepcopy(stored)
    return {b.name: conform(fresh.get(b.name), b, policy.currency, now) for b in budgets}


class MemoryUsageStore:
    """A :class:`UsageStore` in memory, with resourceVersions (no cluster: tests, benchmarks).

    Objects spring into being on first read, empty.
    """

    def __init__(self) -> None:
        self.rv = 0
        self.objects: dict[Owner, dict[str, Any]] = {}
        self.writes = 0

    def _object(self, owner: Owner) -> dict[str, Any]:
        if owner not in self.objects:
            self.rv += 1
            self.objects[owner] = {"metadata": {"resourceVersion": str(self.rv)}, "status": {}}
        return self.objects[owner]

    async def read_owner(self, owner: Owner) -> dict[str, Any] | None:
        """The object (a copy)."""
        return copy.deepcopy(self._object(owner))

    async def write_usage_if(
        self, owner: Owner, usage: dict[str, Any], resource_version: str
    ) -> WriteResult:
        """Write ``status.usage`` if the object is still at ``resource_version``."""
        obj = self._object(owner)
        if obj["metadata"]["resourceVersion"] != resource_version:
            return WriteResult(409)
        self.rv += 1
        self.writes += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        obj["status"]["usage"] = copy.deepcopy(usage)
        return WriteResult(200, copy.deepcopy(obj))
