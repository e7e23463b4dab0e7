"""The codec between budget ledgers (:mod:`.ledger`) and ``status.usage``, both ways.

Decoding goes through the same pydantic models the CRD schema is generated from
(:class:`~promethios.api.budget.UsageStatus`), budget by budget: one entry that does not
validate reads as absent (logged by name only) and never stops the others. Encoding renders
every ledger and checks each entry against the model before it leaves, so a body the API
server would refuse is never sent (an entry that fails is left out and logged).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from ..api.budget import (
    Amounts,
    BudgetLimits,
    BudgetUsage,
    Lease,
    UsageStatus,
    UsedAmounts,
    from_micro,
    to_micro,
)
from .codec import epoch, rfc3339
from .ledger import LeaseBook, Ledger, Limits, Tally, Units

log = logging.getLogger(__name__)


def decode_usage(raw: Any) -> dict[str, Ledger]:
    """The ledgers stored in a ``status.usage`` value, by budget name."""
    entries = raw.get("budgets") if isinstance(raw, Mapping) else None
    ledgers: dict[str, Ledger] = {}
    for entry in entries if isinstance(entries, list) else []:
        try:
            usage = BudgetUsage.model_validate(entry)
        except pydantic.ValidationError as error:
            name = entry.get("name") if isinstance(entry, Mapping) else None
            log.warning("stored usage of budget %s does not validate (%d errors); read as empty",
                        name, error.error_count())  # fmt: skip
            continue
        ledger = _ledger(usage)
        if ledger is not None:
            ledgers[ledger.name] = ledger
    return ledgers


def _ledger(usage: BudgetUsage) -> Ledger | None:
    start, end = epoch(usage.window_start), epoch(usage.reset_at)
    if start is None or end is None:
        return None
    limit = usage.limit
    return Ledger(
        usage.name,
        str(usage.scope),
        str(usage.window),
        start,
        end,
        Limits(limit.tokens, limit.requests, to_micro(limit.cost) if limit.cost else None),
        usage.currency,
        _units(usage.used),
        usage.used.input_tokens,
        usage.used.output_tokens,
        {
            item.model: Tally(
                item.input_tokens, item.output_tokens, item.requests, to_micro(item.cost)
            )
            for item in usage.by_model
        },
        {lease.id: _lease(lease, start) for lease in usage.leases},
        set(usage.alerted),
    )


def _lease(lease: Lease, fallback: float) -> LeaseBook:
    return LeaseBook(
        lease.id,
        epoch(lease.updated) or fallback,
        _units(lease.granted),
        _units(lease.consumed),
        _units(lease.returned),
        {m.model: [m.input_tokens, m.output_tokens, m.requests] for m in lease.usage},
        lease.closed,
    )


def _units(amounts: Amounts) -> Units:
    return Units(amounts.tokens, amounts.requests, to_micro(amounts.cost))


def _amounts(units: Units) -> dict[str, Any]:
    return {"tokens": units.tokens, "requests": units.requests, "cost": from_micro(units.cost)}


def encode_usage(ledgers: Iterable[Ledger], now: float) -> dict[str, Any]:
    """``status.usage`` for these ledgers (each entry checked against the schema)."""
    entries: list[dict[str, Any]] = []
    highest: int | None = None
    for ledger in sorted(ledgers, key=lambda item: item.name):
        entry = _entry(ledger)
        try:
            BudgetUsage.model_validate(entry)
        except pydantic.ValidationError as error:
            log.error("usage of budget %s does not validate (%d errors); not written",
                      ledger.name, error.error_count())  # fmt: skip
            continue
        entries.append(entry)
        highest = max(highest or 0, ledger.percent())
    body = {
        "budgets": entries,
        "summary": f"{highest}%" if highest is not None else "",
        "updatedAt": rfc3339(now),
    }
    UsageStatus.model_validate(body)
    return body


def _entry(ledger: Ledger) -> dict[str, Any]:
    limits = ledger.limits
    limit = BudgetLimits(
        tokens=limits.tokens,
        requests=limits.requests,
        cost=from_micro(limits.cost) if limits.cost is not None else None,
    ).model_dump(by_alias=True, exclude_none=True)
    used = UsedAmounts(
        tokens=ledger.used.tokens,
        requests=ledger.used.requests,
        cost=from_micro(ledger.used.cost),
        input_tokens=ledger.input_tokens,
        output_tokens=ledger.output_tokens,
    ).model_dump(by_alias=True)
    return {
        "name": ledger.name,
        "scope": ledger.scope,
        "window": ledger.window,
        "windowStart": rfc3339(ledger.start),
        "resetAt": rfc3339(ledger.end),
        "currency": ledger.currency,
        "limit": limit,
        "used": used,
        "reserved": _amounts(ledger.reserved()),
        "percent": ledger.percent(),
        "byModel": [
            {
                "model": model,
                "inputTokens": tally.input,
                "outputTokens": tally.output,
                "requests": tally.requests,
                "cost": from_micro(tally.cost),
            }
            for model, tally in sorted(ledger.by_model.items())
        ],
        "leases": [_lease_entry(lease) for _, lease in sorted(ledger.leases.items())],
        "alerted": sorted(ledger.alerted),
    }


def _lease_entry(lease: LeaseBook) -> dict[str, Any]:
    return {
        "id": lease.id,
        "granted": _amounts(lease.granted),
        "consumed": _amounts(lease.consumed),
        "returned": _amounts(lease.returned),
        "usage": [
            {"model": model, "inputTokens": i, "outputTokens": o, "requests": r}
            for model, (i, o, r) in sorted(lease.usage.items())
        ],
        "updated": rfc3339(lease.updated),
        "closed": lease.closed,
    }
