"""kopf's ToggleSet, patched: a start over N objects wakes its waiters O(N) times, not N²."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kopf._cogs.aiokits import aiotoggles

from promethios.controller import kopfpatch

pytestmark = pytest.mark.unit

N = 300


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ToggleSet's methods are put back after the test (the patch is process-wide)."""
    for attr in ("make_toggle", "drop_toggle", "drop_toggles"):
        monkeypatch.setattr(aiotoggles.ToggleSet, attr, getattr(aiotoggles.ToggleSet, attr))
    monkeypatch.delattr(aiotoggles.ToggleSet, kopfpatch._PATCHED, raising=False)


async def _prepopulate(waiters: int) -> int:
    """kopf's pre-population: N object toggles made and dropped while N workers wait.
    Returns how often the waiters' predicate was evaluated."""
    toggles = aiotoggles.ToggleSet(all)
    evaluations = 0
    is_on = toggles.is_on

    def counted() -> bool:
        nonlocal evaluations
        evaluations += 1
        return is_on()

    toggles.is_on = counted  # type: ignore[method-assign]
    blocker = await toggles.make_toggle(name="listing")
    objects = []
    tasks = []
    for _ in range(waiters):
        objects.append(await toggles.make_toggle())
        tasks.append(asyncio.create_task(toggles.wait_for(True)))
        await asyncio.sleep(0)
    for toggle in objects:
        await toggles.drop_toggle(toggle)
        await asyncio.sleep(0)
    assert not any(task.done() for task in tasks)  # the listing still blocks them
    await toggles.drop_toggle(blocker)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    return evaluations


def test_unpatched_kopf_wakes_every_waiter_on_every_toggle(restored: None) -> None:
    assert asyncio.run(_prepopulate(N)) > N * N // 2


def test_patched_start_wakes_the_waiters_a_linear_number_of_times(restored: None) -> None:
    assert kopfpatch.apply()
    assert kopfpatch.apply()  # idempotent
    assert asyncio.run(_prepopulate(N)) < 10 * N


def test_patched_set_still_wakes_waiters_when_a_toggle_turns(restored: None) -> None:
    kopfpatch.apply()

    async def scenario() -> list[bool]:
        paused = aiotoggles.ToggleSet(any)
        first = await paused.make_toggle(False)
        waiting_on = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        seen = [waiting_on.done()]
        await first.turn_to(True)  # kopf's own Toggle: notifies the shared condition
        await asyncio.wait_for(waiting_on, timeout=2)
        waiting_off = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        seen.append(waiting_off.done())
        await paused.drop_toggle(first)  # the aggregate turns off: waiters are woken
        await asyncio.wait_for(waiting_off, timeout=2)
        late = await paused.make_toggle(True)  # the aggregate turns on again
        seen.append(paused.is_on() and late.is_on())
        return seen

    assert asyncio.run(scenario()) == [False, False, True]


def test_unknown_internals_are_left_alone(
    restored: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Changed:
        def __init__(self, fn: Any) -> None:
            self.fn = fn

    monkeypatch.setattr(aiotoggles, "ToggleSet", Changed)
    assert kopfpatch.apply() is False
    assert "unknown internals" in caplog.text
