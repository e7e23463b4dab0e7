"""The agent page's integration instructions: rendered from the cached rows by
:func:`promethios.deploy.instructions.render`, the policy only for those who may read it."""

from __future__ import annotations

from dashboard_fakes import agent_object, policy_object

from promethios.dashboard.model import agent_row, policy_row
from promethios.dashboard.pages import instructions


def test_the_instructions_show_the_policy_to_those_who_may_read_it() -> None:
    agent = agent_row(agent_object("team-a", "alpha"))
    policy = policy_row(policy_object("team-a", agent.policy))
    shown = instructions(agent, policy)
    assert "# Integrating `team-a/alpha`" in shown and f"ga-{agent.uid}" in shown
    assert "`no-secrets`" in shown
    hidden = instructions(agent, None)
    assert "`no-secrets`" not in hidden and "could not be read" in hidden


def test_an_invalid_stored_spec_shows_no_instructions() -> None:
    body = agent_object("team-a", "alpha")
    body["spec"]["port"] = 15001  # the sidecar's: the model refuses it
    assert instructions(agent_row(body), None) == ""
