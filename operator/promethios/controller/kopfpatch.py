"""A linear start for kopf over many existing objects (kopf 1.45's ToggleSet, patched).

kopf holds every object's handlers until all its indexes are filled: each listed object
adds a toggle to one shared ``ToggleSet`` and drops it once indexed, and every handler
worker waits on that set. kopf wakes *every* waiting worker on *every* toggle added or
dropped (``Condition.notify_all``), so a start over N objects costs about N² wake-ups:
with 10,000 agents (50,000 watched objects) no agent was reconciled in 5 minutes, and a
restart over 1,000 agents took about 100 s. That start is also what a new leader does
after a failover.

The waiters only wait for the set's aggregate state (all on / any on), which adding or
dropping a toggle changes only rarely, so :func:`apply` makes ``make_toggle`` and
``drop_toggle(s)`` notify only when the aggregate changed. A toggle turned on or off
still notifies (kopf's own ``Toggle.turn_to``), so nothing waits that would have been
woken before. The patch is applied only to the ``ToggleSet`` whose internals it was
written against (checked, else left alone with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kopf._cogs.aiokits import aiotoggles

log = logging.getLogger(__name__)

_PATCHED = "_promethios_linear_notify"


def apply() -> bool:
    """Patch kopf's ``ToggleSet`` (idempotent); False when its internals are unknown."""
    toggle_set: Any = aiotoggles.ToggleSet
    if getattr(toggle_set, _PATCHED, False):
        return True
    probe = toggle_set(all)
    if not all(hasattr(probe, attr) for attr in ("_condition", "_toggles", "_fn")):
        log.warning("kopf's ToggleSet has unknown internals; its start stays quadratic")
        return False

    async def make_toggle(self: Any, __val: bool = False, *, name: str | None = None) -> Any:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggles(self: Any, toggles: Iterable[Any]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()

    async def drop_toggle(self: Any, toggle: Any) -> None:
        await drop_toggles(self, (toggle,))

    toggle_set.make_toggle = make_toggle
    toggle_set.drop_toggle = drop_toggle
    toggle_set.drop_toggles = drop_toggles
    setattr(toggle_set, _PATCHED, True)
    return True
