"""Bounded per-agent memory of idempotency keys, so a report delivered twice counts once.

Each agent has its own insertion-ordered map ``key -> expiry``; entries expire after a
TTL and the oldest are dropped beyond a size cap, so memory is bounded by
``agents x max_keys`` whatever clients send.
"""

from __future__ import annotations

from collections import OrderedDict


class IdempotencyCache:
    """Remembers keys per agent for ``ttl`` seconds, at most ``max_keys`` per agent."""

    def __init__(self, ttl: float, max_keys: int) -> None:
        self._ttl = ttl
        self._max = max_keys
        self._agents: dict[str, OrderedDict[str, float]] = {}

    def seen(self, agent_id: str, key: str, now: float) -> bool:
        """True if ``key`` was recorded for the agent and has not expired."""
        keys = self._agents.get(agent_id)
        if keys is None:
            return False
        self._expire(keys, now)
        return key in keys

    def add(self, agent_id: str, key: str, now: float) -> None:
        """Record ``key`` for the agent (refreshing its expiry)."""
        keys = self._agents.setdefault(agent_id, OrderedDict())
        keys.pop(key, None)
        keys[key] = now + self._ttl
        while len(keys) > self._max:
            keys.popitem(last=False)

    def check_and_add(self, agent_id: str, key: str, now: float) -> bool:
        """Record ``key``; True if it was already there (a duplicate)."""
        if self.seen(agent_id, key, now):
            return True
        self.add(agent_id, key, now)
        return False

    def drop_agent(self, agent_id: str) -> None:
        """Forget everything about a deleted agent."""
        self._agents.pop(agent_id, None)

    @staticmethod
    def _expire(keys: OrderedDict[str, float], now: float) -> None:
        # Insertion order is expiry order (constant TTL), so expired keys are at the front.
        while keys:
            key, expiry = next(iter(keys.items()))
            if expiry > now:
                break
            del keys[key]
