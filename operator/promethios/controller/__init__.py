"""The controller: kopf handlers around one idempotent reconcile.

- :mod:`.conditions`  pure: condition bookkeeping and Ready/Progressing/Degraded
- :mod:`.plan`        pure: the desired children and status for one agent
- :mod:`.reconcile`   reads the world, applies the plan, writes status only on change
- :mod:`.handlers`    thin kopf handlers that call the reconcile
- :mod:`.main`        ``promethios operator``
"""
