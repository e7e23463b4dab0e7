"""``make run``: the embedded control plane, the operator and a live governed agent.

- :mod:`.run`       the orchestration (``promethios demo``)
- :mod:`.samples`   the policy, credential and GovernedAgent it applies
- :mod:`.agent`     the sample agent, which only knows its sidecar's URLs
- :mod:`.upstream`  a local stand-in for the model provider
"""

from .run import main

__all__ = ["main"]
