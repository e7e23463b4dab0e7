"""The controller: kopf handlers around one idempotent reconcile.

- :mod:`.observed`     data: what was observed for one agent, and the plan of what to write
- :mod:`.blockers`     pure: missing references, a refused sidecar image, enforcement in force
- :mod:`.conditions`   pure: condition bookkeeping and Ready/Progressing/Degraded
- :mod:`.plan`         pure: the desired children and status for one agent
- :mod:`.revisions`    pure: revision history and rollback on breach
- :mod:`.losses`       pure: violations a stopped pod's sidecar could not deliver
- :mod:`.compare`      pure: desired against live (children as subsets, the operator's status)
- :mod:`.triggers`     pure: which watch events call for a reconcile
- :mod:`.childevents`  pure: what an informer's event on a child or a Secret calls for
- :mod:`.leader`       pure: leader election decisions on a Lease (clock injected)
- :mod:`.cache`        watch-fed copies of agents and children, overlaid with own writes
- :mod:`.context`      what a reconcile runs with: client, settings, clock, per-agent timers
- :mod:`.timers`       one thread keeping the scheduled reconciles, a small pool firing them
- :mod:`.egress`       the egress lock's gateway objects, NetworkPolicies and status
- :mod:`.reconcile`    reads the world, applies the plan, writes status only on change
- :mod:`.handlers`     thin kopf handlers that call the reconcile
- :mod:`.cachefeed`    the agents' kopf index and the informers' stores feeding :mod:`.cache`
- :mod:`.informers`    the operator's own informers for the children and all Secrets
- :mod:`.informed`     what they keep of each object, and the events they pass on
- :mod:`.workpool`     the few worker threads that carry those events out, per key in order
- :mod:`.policystatus` ``GovernancePolicy.status``
- :mod:`.resync`       periodic drift repair
- :mod:`.election`     the thread keeping (or waiting for) the Lease; :mod:`.standby` the wait
- :mod:`.kopfpatch`    kopf's start over many objects made linear (its ToggleSet)
- :mod:`.tls`          the ingest API's certificate and the CA bundle the operator publishes
- :mod:`.options`      the operator's command line
- :mod:`.main`         the operator process: kopf, the handlers and companions (e.g. the ingest)
"""
