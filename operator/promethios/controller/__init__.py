"""The controller: kopf handlers around one idempotent reconcile.

- :mod:`.conditions`  pure: condition bookkeeping and Ready/Progressing/Degraded
- :mod:`.plan`        pure: the desired children and status for one agent
- :mod:`.compare`     pure: desired against live (children as subsets, the operator's status)
- :mod:`.reconcile`   reads the world, applies the plan, writes status only on change
- :mod:`.handlers`    thin kopf handlers that call the reconcile
- :mod:`.main`        the operator process: kopf, the handlers and companions (e.g. the ingest)
"""
