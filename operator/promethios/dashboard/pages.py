"""The agent page's parts: children and Events (read on the viewer's behalf), and the
integration instructions (rendered from the cache by :mod:`promethios.deploy`).

Children are the objects the operator made (``status.children``). Each is read with the
viewer's token, so it shows only what their RBAC lets them read; the API-key Secret is
never read at all (its name is enough). Event messages are masked like violation
descriptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from ..api.agent import InvalidSpec, parse_agent
from ..api.conditions import parse_time
from ..api.policy import GovernancePolicySpec
from ..deploy.instructions import render
from .model import AgentRow, PolicyRow, mask
from .viewer import Viewer, ViewerError
from .views import age

#: status.children key -> kind, in the order shown.
CHILD_KINDS = (
    ("deployment", "Deployment"),
    ("service", "Service"),
    ("configMap", "ConfigMap"),
    ("networkPolicy", "NetworkPolicy"),
    ("secret", "Secret"),
)
EVENTS_SHOWN = 20


@dataclass(frozen=True)
class ChildRow:
    """One child as shown."""

    kind: str
    name: str
    state: str


@dataclass(frozen=True)
class EventRow:
    """One Event as shown."""

    type: str
    reason: str
    message: str
    count: int
    age: str
    at: float


def child_state(kind: str, obj: Mapping[str, Any] | None) -> str:
    """A few words on a child's state (pure)."""
    if obj is None:
        return "absent"
    if kind == "Deployment":
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        wanted = spec.get("replicas", 1)
        ready = status.get("readyReplicas") or 0
        available: Mapping[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Available"), {}
        )
        return f"{ready}/{wanted} ready, Available={available.get('status', 'Unknown')}"
    return "present"


async def children(viewer: Viewer | None, token: str, agent: AgentRow) -> list[ChildRow]:
    """The agent's children and their state, read as the viewer."""

    async def one(key: str, kind: str) -> ChildRow:
        name = agent.children.get(key, "")
        if not name:
            return ChildRow(kind, "", "none")
        if kind == "Secret":
            return ChildRow(kind, name, "holds the agent's ingest key (not read)")
        if viewer is None:
            return ChildRow(kind, name, "unknown")
        try:
            obj = await viewer.child(token, kind, agent.namespace, name)
        except ViewerError as error:
            return ChildRow(kind, name, "you may not read it" if error.status == 403 else "error")
        return ChildRow(kind, name, child_state(kind, obj))

    return list(await asyncio.gather(*(one(key, kind) for key, kind in CHILD_KINDS)))


def event_rows(items: list[dict[str, Any]], now: float) -> list[EventRow]:
    """Events newest first, messages masked (pure)."""
    rows = []
    for item in items:
        when = parse_time(
            item.get("lastTimestamp") or item.get("eventTime") or item.get("firstTimestamp")
        )
        at = when.timestamp() if when else 0.0
        rows.append(
            EventRow(
                type=str(item.get("type") or ""),
                reason=str(item.get("reason") or ""),
                message=mask(str(item.get("message") or ""))[:512],
                count=int(item.get("count") or 1),
                age=age(now - at) if at else "?",
                at=at,
            )
        )
    rows.sort(key=lambda row: row.at, reverse=True)
    return rows[:EVENTS_SHOWN]


async def events(
    viewer: Viewer | None, token: str, agent: AgentRow, now: float
) -> tuple[list[EventRow], str]:
    """(Events, why none are shown) read as the viewer."""
    if viewer is None:
        return [], "Events are not available here."
    try:
        items = await viewer.events(token, agent.namespace, agent.name, agent.uid)
    except ViewerError as error:
        if error.status == 403:
            return [], "You may not list Events in this namespace."
        return [], f"Events could not be read (HTTP {error.status})."
    return event_rows(items, now), ""


def instructions(agent: AgentRow, policy: PolicyRow | None) -> str:
    """The agent's integration instructions (Markdown, shown as text), as ``promethios
    instructions`` prints them; the policy part only when the viewer may read the policy.
    Empty when the stored spec does not validate."""
    body = {
        "metadata": {"name": agent.name, "namespace": agent.namespace, "uid": agent.uid},
        "spec": agent.spec,
    }
    status: dict[str, Any] = {
        "enforcement": {
            "action": agent.enforcement,
            "breach": agent.breach,
            "reason": agent.enforcement_reason,
        },
        "rollout": {"revision": agent.revision},
    }
    try:
        typed = parse_agent(body)
        spec = GovernancePolicySpec.model_validate(policy.spec) if policy is not None else None
    except (InvalidSpec, pydantic.ValidationError):
        return ""
    return render(typed, spec, status)
