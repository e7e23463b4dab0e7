"""Deploy and integrate: what a person needs to get an agent running under governance.

- :mod:`.instructions`  the agent's integration instructions (Markdown), rendered from
  jinja2 templates with its real values (never its key); the dashboard calls
  :func:`.instructions.render` too
- :mod:`.kustomize`     ``promethios package``: a GitOps bundle (kustomize base + overlays)
- :mod:`.compose`       ``promethios package --format compose``: an External agent beside its
  sidecar in Docker Compose, reporting to the cluster's ingest API over TLS
- :mod:`.history`       ``promethios rollback``: the revision history and restoring one
- :mod:`.cli`           the three subcommands (the only module here that talks to the API
  server, through :mod:`promethios.kube`)

Imports api, builders and kube only (an import contract in pyproject.toml).
"""
