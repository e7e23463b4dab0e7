"""Pure comparisons of what the operator wants against what the API server has.

- children: a desired manifest is applied only when it is not a subset of the live object
  (server defaults add fields; removed fields are caught by the applied-hash annotation);
- status: the operator's part of status is written only when it differs, and a change
  that is rollout progress only (pod counts, or a new agent's first status while its pods
  start) may wait to coalesce with the next one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.conditions import OPERATOR_TYPES
from ..builders.meta import Manifest


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field of ``desired`` has the same value in ``live``.

    Server defaults add fields, so the live object is compared as a superset; lists
    must match element by element. Removed fields are caught by the applied-hash
    annotation, which is part of ``desired``.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and is_subset(value, live[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
        )
    return bool(desired == live)


def needs_apply(desired: Manifest, live: Mapping[str, Any] | None) -> bool:
    """Apply only when the child is missing or differs: unchanged agents cost no writes."""
    return live is None or not is_subset(desired, live)


def status_differs(desired: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether applying ``desired`` would change anything the operator owns."""
    for key, value in desired.items():
        if key == "conditions":
            mine = [c for c in current.get("conditions") or [] if c.get("type") in OPERATOR_TYPES]
            if sorted(mine, key=_type) != sorted(value, key=_type):
                return True
        elif current.get(key) != value:
            return True
    # A field the operator stopped setting (e.g. the previous key's expiry) must be removed.
    return _dropped(desired, current)


def _type(condition: Mapping[str, Any]) -> str:
    return str(condition.get("type"))


def _dropped(desired: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    return any(key in current and key not in desired for key in ("replicas", "readyReplicas"))


#: Status fields that follow the pods' progress (counts), not the agent's state.
PROGRESS_FIELDS = ("replicas", "readyReplicas")


def _same_transitions(desired: list[dict[str, Any]], current: list[Mapping[str, Any]]) -> bool:
    """Each desired condition exists with the same status, reason and observedGeneration."""
    live = {c.get("type"): c for c in current}

    def facts(condition: Mapping[str, Any]) -> tuple[Any, ...]:
        return (
            condition.get("status"),
            condition.get("reason"),
            condition.get("observedGeneration"),
            condition.get("lastTransitionTime"),
        )

    return all(c["type"] in live and facts(c) == facts(live[c["type"]]) for c in desired)


def progress_only_status(status: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether writing ``status`` over ``current`` changes rollout progress only.

    That is: pod counts (``replicas``, ``readyReplicas``, the conditions' messages)
    differ, while every condition keeps its status, reason and observedGeneration and
    every other field is unchanged.
    """
    for key, value in status.items():
        if key == "conditions":
            if not _same_transitions(value, current.get("conditions") or []):
                return False
        elif key not in PROGRESS_FIELDS and current.get(key) != value:
            return False
    return all(key in current for key in PROGRESS_FIELDS if key in status) and not _dropped(
        status, current
    )


def first_status_starting(status: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether ``status`` is the operator's first for a new agent whose pods are starting:
    nothing of the operator's is stored yet, and it does not say Ready. Such a write may
    wait a moment to go out together with Ready (one status write instead of two)."""
    if current.get("observedGeneration") is not None:
        return False
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return not ready or ready[0].get("status") != "True"
