"""The two actions: acknowledge a breach, suspend or resume (POST, CSRF, SAR, viewer token).

Each checks the session's CSRF token, asks a SubjectAccessReview whether the viewer may
``patch`` the GovernedAgent, and then patches it **with the viewer's own token**, so the
API server's RBAC and admission apply to them as if they had used kubectl.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .context import DASHBOARD, checked_form, session_of, visible_agent
from .model import AgentRow
from .viewer import ViewerError

log = logging.getLogger(__name__)


async def _act(request: web.Request, patch_of: Callable[[AgentRow, dict[str, str]], Any]) -> Any:
    """An action: CSRF, a SubjectAccessReview for patch, then the patch as the viewer."""
    dash = request.app[DASHBOARD]
    session, token = session_of(request)
    form = await checked_form(request, session.csrf)
    agent = await visible_agent(request)
    if not await dash.authz.may_patch_agent(session.identity, agent.namespace, agent.name):
        raise web.HTTPForbidden(text="you may not patch this GovernedAgent")
    patch, done = patch_of(agent, form)
    if dash.viewer is None:
        raise web.HTTPServiceUnavailable(text="actions are not available here")
    try:
        await dash.viewer.patch_agent(token, agent.namespace, agent.name, patch)
    except ViewerError as error:
        message = f"the API server refused the patch (HTTP {error.status})"
        raise web.HTTPForbidden(text=message) from None
    log.info("dashboard: %s %s %s", session.identity.username, done, agent.key)
    raise web.HTTPSeeOther(f"/agents/{agent.namespace}/{agent.name}?done={done}")


def acknowledge_patch(agent: AgentRow, form: dict[str, str]) -> tuple[dict[str, Any], str]:
    """spec.governance.acknowledgedBreach := the breach the viewer saw, if still current."""
    seen = form.get("breach", "")
    if not seen.isdigit() or int(seen) != agent.breach or agent.breach <= agent.acknowledged_breach:
        raise web.HTTPConflict(text="the breach changed since the page was shown; reload")
    return {"spec": {"governance": {"acknowledgedBreach": agent.breach}}}, "acknowledged"


def suspend_patch(agent: AgentRow, form: dict[str, str]) -> tuple[dict[str, Any], str]:
    """spec.suspend := the value asked for."""
    value = form.get("suspend")
    if value not in ("true", "false"):
        raise web.HTTPUnprocessableEntity(text="suspend: expected true or false")
    return {"spec": {"suspend": value == "true"}}, "suspended" if value == "true" else "resumed"


async def acknowledge(request: web.Request) -> web.StreamResponse:
    """``POST .../acknowledge``: release a Suspend or Quarantine."""
    result: web.StreamResponse = await _act(request, acknowledge_patch)
    return result


async def suspend(request: web.Request) -> web.StreamResponse:
    """``POST .../suspend``: suspend or resume."""
    result: web.StreamResponse = await _act(request, suspend_patch)
    return result
