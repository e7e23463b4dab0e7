"""The dashboard's pages and its summary API (aiohttp routes over the watch-fed cache).

Routes: ``GET /login``, ``POST /login``, ``POST /logout`` (:mod:`.signin`), ``GET /``
(fleet), ``GET /agents/{ns}/{name}`` (and ``/live``, the fragment its live region
refreshes), ``POST /agents/{ns}/{name}/acknowledge`` and ``/suspend`` (:mod:`.actions`),
``GET /policies``, ``GET /integrations``, ``GET /api/v1/governance/summary?range=`` (a
session or ``Authorization: Bearer <kubernetes token>``), ``/healthz``, ``/static/*``.
Access rules: :mod:`.context`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..api import wire
from ..builders.workload import provider_env
from . import actions, pages, signin
from .authz import POLICIES, SINKS
from .context import (
    DASHBOARD,
    HERE,
    SESSION,
    Dashboard,
    common,
    html,
    security_headers,
    session_of,
    visible_agent,
)
from .model import AgentRow
from .summary import fleet_summary
from .views import (
    DEFAULT_RANGE,
    RANGES,
    STATES,
    FleetFilter,
    age,
    fleet_page,
    health,
    parse_range,
    policy_entries,
    sink_entries,
    violation_bars,
)


async def fleet(request: web.Request) -> web.Response:
    """Every agent the viewer may see, filtered, worst first."""
    dash = request.app[DASHBOARD]
    session, _ = session_of(request)
    visible = await dash.authz.visible(session.identity, dash.cache.namespaces())
    chosen = FleetFilter.from_query(request.query)
    page = fleet_page(
        dash.cache.agents.values(), visible, chosen, dash.clock(), dash.cache.sparklines
    )
    context = {
        **common(request, "fleet"),
        "fleet": page,
        "chosen": chosen,
        "states": STATES,
        "ranges": list(RANGES),
        "visible_namespaces": sorted(visible),
    }
    return html(await asyncio.to_thread(dash.render, "fleet.html", **context))


async def _live_context(request: web.Request, agent: AgentRow) -> dict[str, Any]:
    dash = request.app[DASHBOARD]
    session, _ = session_of(request)
    now = dash.clock()
    bars = violation_bars(agent.buckets, now)
    return {
        **common(request, "fleet"),
        "agent": agent,
        "health": health(agent, now),
        "heartbeat_age": age(now - agent.last_heartbeat if agent.last_heartbeat else None),
        "may_patch": await dash.authz.may_patch_agent(
            session.identity, agent.namespace, agent.name
        ),
        "bars": bars,
        "bars_max": max([total for _, total, _ in bars] + [1]),
    }


async def agent_live(request: web.Request) -> web.Response:
    """The live part of the agent page (state, conditions, recent violations)."""
    agent = await visible_agent(request)
    dash = request.app[DASHBOARD]
    return html(dash.render("agent_live.html", **await _live_context(request, agent)))


async def agent_page(request: web.Request) -> web.Response:
    """One agent: state, conditions, violations, Events, children, policy, sinks."""
    dash = request.app[DASHBOARD]
    session, token = session_of(request)
    agent = await visible_agent(request)
    identity, namespace = session.identity, agent.namespace
    children, (events, events_error), policy_ok, sinks_ok = await asyncio.gather(
        pages.children(dash.viewer, token, agent),
        pages.events(dash.viewer, token, agent, dash.clock()),
        dash.authz.visible(identity, [namespace], POLICIES),
        dash.authz.visible(identity, [namespace], SINKS),
    )
    sinks = [
        (name, dash.cache.sinks.get(f"{namespace}/{name}") if sinks_ok else None)
        for name in agent.alert_sinks
    ]
    done = {
        "acknowledged": "Breach acknowledged.",
        "suspended": "Suspended.",
        "resumed": "Resumed.",
    }
    policy = dash.cache.policies.get(f"{namespace}/{agent.policy}")
    context = {
        **await _live_context(request, agent),
        "live_every": dash.live_every,
        "children": children,
        "events": events,
        "events_error": events_error,
        "policy": policy if policy_ok else None,
        "policy_hidden": not policy_ok,
        "sinks": sinks,
        "sinks_hidden": not sinks_ok,
        "integration_env": provider_env(agent.provider),
        "instructions": pages.instructions(agent, policy if policy_ok else None),
        "done": done.get(request.query.get("done", ""), ""),
        "error": "",
    }
    return html(dash.render("agent.html", **context))


def _range(request: web.Request) -> str:
    chosen = request.query.get("range", DEFAULT_RANGE)
    return chosen if chosen in RANGES else DEFAULT_RANGE


async def policies_page(request: web.Request) -> web.Response:
    """Each policy the viewer may see, its agents and their violations in the range."""
    dash = request.app[DASHBOARD]
    session, _ = session_of(request)
    namespaces = dash.cache.namespaces()
    allowed = await dash.authz.visible(session.identity, namespaces, POLICIES)
    agents_ok = await dash.authz.visible(session.identity, namespaces)
    chosen = _range(request)
    entries = policy_entries(
        [p for p in dash.cache.policies.values() if p.namespace in allowed],
        [a for a in dash.cache.agents.values() if a.namespace in agents_ok],
        dash.clock() - RANGES[chosen],
    )
    context = {**common(request, "policies"), "entries": entries, "range": chosen}
    return html(dash.render("policies.html", ranges=list(RANGES), **context))


async def integrations_page(request: web.Request) -> web.Response:
    """Each AlertSink the viewer may see, with its delivery state."""
    dash = request.app[DASHBOARD]
    session, _ = session_of(request)
    namespaces = dash.cache.namespaces()
    allowed = await dash.authz.visible(session.identity, namespaces, SINKS)
    agents_ok = await dash.authz.visible(session.identity, namespaces)
    entries = sink_entries(
        [s for s in dash.cache.sinks.values() if s.namespace in allowed],
        [a for a in dash.cache.agents.values() if a.namespace in agents_ok],
    )
    return html(
        dash.render("integrations.html", entries=entries, **common(request, "integrations"))
    )


def _json_error(status: int, error: str, message: str, **headers: str) -> web.Response:
    body = wire.ErrorBody(error=error, message=message, fields=[])
    return web.Response(
        status=status, text=body.model_dump_json(), content_type="application/json", headers=headers
    )


async def summary(request: web.Request) -> web.Response:
    """``GET /api/v1/governance/summary?range=``: a session, or a Kubernetes bearer token."""
    dash = request.app[DASHBOARD]
    identity = session_of(request)[0].identity if SESSION in request else None
    header = request.headers.get("Authorization", "")
    if identity is None and header.lower().startswith("bearer "):
        identity = await dash.authz.authenticate(header[7:].strip(), cache=True)
    if identity is None:
        return _json_error(
            401, "unauthenticated", "a Kubernetes bearer token is required",
            **{"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    try:
        seconds = parse_range(request.query.get("range", DEFAULT_RANGE))
    except ValueError as error:
        return _json_error(422, "validation_failed", str(error))
    visible = await dash.authz.visible(identity, dash.cache.namespaces())
    document = fleet_summary(dash.cache.agents.values(), visible, seconds, dash.clock())
    return web.json_response(document)


async def healthz(request: web.Request) -> web.Response:
    """Liveness."""
    return web.json_response({"status": "ok", "synced": request.app[DASHBOARD].cache.ready})


def build_app(dashboard: Dashboard) -> web.Application:
    """The aiohttp application."""
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    app[DASHBOARD] = dashboard
    app.router.add_get("/login", signin.login_page)
    app.router.add_post("/login", signin.login)
    app.router.add_post("/logout", signin.logout)
    app.router.add_get("/", fleet)
    app.router.add_get("/agents/{namespace}/{name}", agent_page)
    app.router.add_get("/agents/{namespace}/{name}/live", agent_live)
    app.router.add_post("/agents/{namespace}/{name}/acknowledge", actions.acknowledge)
    app.router.add_post("/agents/{namespace}/{name}/suspend", actions.suspend)
    app.router.add_get("/policies", policies_page)
    app.router.add_get("/integrations", integrations_page)
    app.router.add_get(wire.PATH_SUMMARY, summary)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", HERE / "static", show_index=False, follow_symlinks=False)
    return app
