"""The governance dashboard: server-rendered pages over a watch-fed cache, Kubernetes auth.

- :mod:`.model`      immutable rows parsed once per watch event (agents, policies, sinks)
- :mod:`.views`      pure view logic: filters, worst-first order, ranges, page models
- :mod:`.summary`    ``GET /api/v1/governance/summary?range=`` from the stored statuses
- :mod:`.cache`      the watch-fed cache the pages render from (no per-request LISTs)
- :mod:`.sessions`   sessions, the sealed viewer token, CSRF tokens (pure)
- :mod:`.authz`      TokenReview and SubjectAccessReview decisions, cached per session
- :mod:`.app`        the aiohttp routes, templates and security headers
- :mod:`.main`       ``promethios dashboard`` and :func:`~.main.start_dashboard`

It imports :mod:`promethios.api`, :mod:`promethios.kube` and the pure
:mod:`promethios.ingest.history`; never the controller (``make lint`` checks it).
"""
