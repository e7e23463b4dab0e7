"""The client layer: the only code in the project that talks to the Kubernetes API server.

Everything above it (controller, ingest) calls functions here with plain dicts and
typed models; nothing above imports ``kubernetes`` directly (``make lint`` checks it).

- :mod:`.client`           the process-wide connection pool and its :data:`~.client.Client` type
- :mod:`.apply`            writes: server-side apply, merge patch, create, delete, Events
- :mod:`.objects`          reads: one object, lists, the server version
- :mod:`.watch`            list-then-watch of a kind in a background thread
- :mod:`.informer`         the operator's lean list-and-watch: paginated, bookmarks, 410
- :mod:`.ingest_requests`  the ingest API's status apply, Events and AlertSink/Secret reads
- :mod:`.lease`            the leader election's Lease: read, create, replace
- :mod:`.access`           TokenReview, SubjectAccessReview, and requests made with a
                           viewer's own token (the dashboard)
"""
