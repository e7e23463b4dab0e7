"""The allowance exchange with the ingest API: leases renewed off the hot path.

One :class:`Allowance` per sidecar, with its own connection pool. Exchanges
(``POST /api/v1/budgets/allowance``) run one at a time:

- for the first call that needs a lease (the budgets that apply are learnt with it);
- in the background (:meth:`run`, checking every :data:`TICK` seconds while calls flow,
  every :data:`IDLE_TICK` seconds otherwise)
  when a lease runs low, is half its ``leaseSeconds`` old, its window ended, or it has
  been idle for :data:`~.budget.IDLE_SECONDS` (then the unspent allowance goes back);
  after the first call and then every :data:`REFRESH_SECONDS` while calls flow, even
  without budgets (a ``Namespace`` budget of another policy may apply);
- by a call that does not fit its leases (:meth:`acquire`): it waits, at most
  :data:`ACQUIRE_SECONDS`, for an exchange that includes what it needs;
- on stop (:meth:`close`): every lease closed, what is unspent given back.

After a failed exchange the next one waits (backoff up to :data:`RETRY_CAP`); calls that
do not fit meanwhile are refused at once rather than piling onto an unreachable ingest.
An ingest without the route (404) is asked again only every :data:`UNSUPPORTED_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import aiohttp
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import ValidationError

from promethios.api.wire import PATH_ALLOWANCE

from .budget import IDLE_SECONDS, UNIT_NAMES, BudgetBook, Shortfall
from .ingestclient import IngestClient
from .state import SidecarState

if TYPE_CHECKING:
    from promethios.api.allowance import AllowanceResponse

log = logging.getLogger(__name__)

TICK = 0.25
IDLE_TICK = 5.0
REFRESH_SECONDS = 60.0
ACQUIRE_SECONDS = 5.0
RETRY_CAP = 5.0
UNSUPPORTED_SECONDS = 600.0
EXCHANGE_TIMEOUT = aiohttp.ClientTimeout(total=ACQUIRE_SECONDS)


class Allowance:
    """Exchanges leases with the ingest API for one sidecar instance."""

    def __init__(self, state: SidecarState, client: IngestClient) -> None:
        self.state = state
        self.client = client
        self.book: BudgetBook = state.budgets
        self.instance = uuid.uuid4().hex[:16]
        self._task: asyncio.Task[bool] | None = None
        self._started = 0
        self._finished = 0
        self._failures = 0
        self._not_before = -math.inf
        self._last_exchange = -math.inf
        self._calls_seen = 0
        self.exchanges = 0
        self.closed = False
        state.metrics.registry.register(_LeaseCollector(self.book))

    # -- for calls ----------------------------------------------------------------------

    async def acquire(self, shortfall: Shortfall) -> bool | None:
        """Wait for an exchange that knows what this call needs; True if it answered,
        False if it failed, None if none was tried (the ingest was failing just now)."""
        if self.closed or self.state.clock() < self._not_before:
            return None
        self.book.wait(shortfall, 1)
        try:
            wanted = self._started + 1
            async with asyncio.timeout(ACQUIRE_SECONDS):
                ok = False
                while self._finished < wanted:
                    ok = await self._exchange()
                return ok
        except TimeoutError:
            return False
        finally:
            self.book.wait(shortfall, -1)

    # -- background ---------------------------------------------------------------------

    async def run(self) -> None:
        """Exchange whenever one is due (see the module docstring); an idle sidecar never
        does (nor loads what an exchange needs)."""
        while not self.closed:
            await asyncio.sleep(TICK if self._busy() else IDLE_TICK)
            now = self.state.clock()
            if now < self._not_before:
                continue
            if self.book.due(now, self.state.wall_clock()) or self._refresh_due(now):
                await self._exchange()

    def _busy(self) -> bool:
        """Calls since the last exchange, or a lease used within the idle time: check often."""
        if self.state.interactions != self._calls_seen:
            return True
        now = self.state.clock()
        return any(
            now - pool.last_call < IDLE_SECONDS or any(pool.inflight)
            for pool in self.book.pools.values()
        )

    def _refresh_due(self, now: float) -> bool:
        return (
            self.state.interactions != self._calls_seen
            and now - self._last_exchange >= REFRESH_SECONDS
        )

    async def close(self) -> None:
        """Close every lease (what is unspent goes back); best effort, once."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self.book.pools:
            await self._once(closing=True)

    # -- one exchange -------------------------------------------------------------------

    async def _exchange(self) -> bool:
        """Join the exchange in flight, or start one."""
        if self._task is None:
            self._started += 1
            self._task = asyncio.get_running_loop().create_task(self._once())
            self._task.add_done_callback(self._done)
        return await asyncio.shield(self._task)

    def _done(self, _: asyncio.Task[bool]) -> None:
        self._finished += 1
        self._task = None

    async def _once(self, closing: bool = False) -> bool:
        try:
            return await self._send(closing)
        except Exception:  # a bug here must fail the exchange, never the call waiting on it
            log.exception("allowance exchange failed")
            return False

    async def _send(self, closing: bool) -> bool:
        state = self.state
        config = state.store.config
        self._calls_seen = state.interactions
        payload = {
            "agentId": config.agent_id,
            "instance": self.instance,
            "leases": self.book.reports(state.clock(), closing),
        }
        response = await self.client.post(
            PATH_ALLOWANCE, payload, read_json=True, timeout=EXCHANGE_TIMEOUT
        )
        now = state.clock()
        self._last_exchange = now
        self.exchanges += 1
        answer = _answer(response.body) if response.ok else None
        if answer is not None:
            self.book.apply(answer, now)
            self._failures = 0
            self._not_before = -math.inf
            state.metrics.allowance.labels(result="ok").inc()
            return True
        self._failures += 1
        if response.status == 404:  # an ingest without budgets: ask again much later
            self._not_before = now + UNSUPPORTED_SECONDS
        else:
            delay = min(RETRY_CAP, 0.25 * 2 ** min(self._failures, 10))
            self._not_before = now + random.uniform(delay / 2, delay)
        result = "unreachable" if response.status is None else "error"
        state.metrics.allowance.labels(result=result).inc()
        log.debug("allowance exchange failed (%s)", response.status)
        return False


def _answer(body: object) -> AllowanceResponse | None:
    # Imported here: a sidecar that never exchanges never loads the wire models.
    from promethios.api.allowance import AllowanceResponse

    try:
        return AllowanceResponse.model_validate(body)
    except ValidationError:
        log.warning("the ingest API's allowance answer does not parse; ignored")
        return None


class _LeaseCollector(Collector):
    """``promethios_sidecar_budget_remaining{budget,unit}``: what the leases still allow."""

    def __init__(self, book: BudgetBook) -> None:
        self._book = book

    def collect(self) -> Iterator[GaugeMetricFamily]:
        remaining = GaugeMetricFamily(
            "promethios_sidecar_budget_remaining",
            "Allowance left in this sidecar's lease (cost in millionths of the currency).",
            labels=["budget", "unit"],
        )
        for ref, pool in list(self._book.pools.items()):
            for unit, name in enumerate(UNIT_NAMES):
                if pool.limited[unit]:
                    remaining.add_metric([ref, name], max(0, pool.remaining(unit)))
        yield remaining
