"""The budget check on a call's way out and its settlement on the way back.

:meth:`BudgetGate.admit` reserves the call's worst case on the leases
(:meth:`~.budget.BudgetBook.admit`); when they do not hold enough it waits for one
exchange (:meth:`~.allowance.Allowance.acquire`) and checks again, once. What still does
not fit is refused in ``enforce`` mode — 429 ``budget.exhausted`` with ``Retry-After``,
503 ``budget.unavailable`` when the ingest API could not be asked, 403
``budget.unpriced`` for a model a cost budget has no price for — and reported (once per
rule per minute); in ``audit`` mode it is reported and the call goes on, its usage still
counted on the leases (a call waits for an exchange in both modes: the leases are how
usage is counted). :meth:`BudgetGate.settle` charges what the call used
(:meth:`~.usage.CallMeter.charge`) exactly once, whatever way the call ended.
"""

from __future__ import annotations

import logging

from aiohttp import web

from promethios.api.common import Severity

from .allowance import Allowance
from .budget import NOTHING, CallBounds, Refusal, Reservation, Shortfall
from .policy import Finding, PolicyEngine
from .relay import CallInfo, policy_error
from .state import SidecarState
from .usage import CallMeter

log = logging.getLogger(__name__)


class BudgetGate:
    """Budget admission and settlement for the model proxy."""

    def __init__(self, state: SidecarState, allowance: Allowance | None) -> None:
        self.state = state
        self.allowance = allowance

    async def admit(
        self, engine: PolicyEngine, info: CallInfo, path: str
    ) -> Reservation | web.Response:
        """Reserve the call's worst case; or the refusal to answer with."""
        book = self.state.budgets
        if not book.active:
            return NOTHING
        bounds = CallBounds(
            info.model,
            info.sent_bytes,
            0 if path == "/v1/embeddings" else info.output_cap,
            info.choices,
        )
        clock, wall = self.state.clock, self.state.wall_clock
        verdict = book.admit(bounds, clock(), wall())
        answered: bool | None = None
        # Two rounds at most: the first exchange may only tell which budgets apply.
        for _ in range(2):
            if not isinstance(verdict, Shortfall) or self.allowance is None:
                break
            answered = await self.allowance.acquire(verdict)
            verdict = book.admit(bounds, clock(), wall(), final=None if answered else False)
        if isinstance(verdict, Shortfall):
            verdict = book.admit(bounds, clock(), wall(), final=bool(answered))
        if isinstance(verdict, Shortfall):  # cannot happen: a final check always decides
            return NOTHING
        if isinstance(verdict, Refusal):
            return await self._refuse(engine, info, verdict)
        return verdict

    async def _refuse(
        self, engine: PolicyEngine, info: CallInfo, refusal: Refusal
    ) -> Reservation | web.Response:
        finding = Finding(
            code=refusal.code,
            rule="budgets",
            severity=SEVERITY[refusal.code],
            description=refusal.detail,
            action="block" if engine.enforce else "report",
            context={"retryAfterSeconds": round(refusal.retry_after, 3)},
        )
        if self.state.should_report_limit(refusal.code):
            await self.state.report([finding], info.extra)
        if finding.blocks:
            retry = refusal.retry_after if refusal.status != 403 else None
            return policy_error(finding, refusal.status, retry)
        return self.state.budgets.track()

    def settle(self, reservation: Reservation, meter: CallMeter, info: CallInfo) -> None:
        """Charge what the call used (the provider's figures, else the upper bound)."""
        if not reservation.held:
            return
        if meter.status is None:
            self.state.budgets.cancel(reservation)
            return
        input_tokens, output_tokens = meter.charge(info.sent_bytes)
        model = info.model or "unknown"
        self.state.budgets.settle(reservation, model, input_tokens, output_tokens)


SEVERITY = {
    "budget.exhausted": Severity.HIGH,
    "budget.unavailable": Severity.MEDIUM,
    "budget.unpriced": Severity.MEDIUM,
}
