"""One shared connection pool to the API server for the whole process.

The operator's reconciles, its handlers' threads and the in-process ingest API all go
through :func:`shared_client`, so every thread shares one pool of
:attr:`ClientSettings.pool_size` connections (and one identity).
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass

import kubernetes

#: The API client type the layers above hold (they never import ``kubernetes`` themselves).
Client = kubernetes.client.ApiClient

_lock = threading.Lock()
_shared: Client | None = None


@dataclass(frozen=True)
class ClientSettings:
    """How the process connects to the API server."""

    kubeconfig: str | None = None
    """Path of a kubeconfig; None means in-cluster config, then $KUBECONFIG / ~/.kube/config."""
    context: str | None = None
    """Kubeconfig context to use; None for the current one."""
    pool_size: int = 16
    """Connections kept open to the API server, shared by every thread."""


def load_configuration(settings: ClientSettings) -> kubernetes.client.Configuration:
    """Resolve a client Configuration: explicit kubeconfig, else in-cluster, else default."""
    configuration = kubernetes.client.Configuration()
    if settings.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(
            config_file=settings.kubeconfig,
            context=settings.context,
            client_configuration=configuration,
        )
    configuration.connection_pool_maxsize = settings.pool_size
    return configuration


def shared_client(settings: ClientSettings | None = None) -> Client:
    """The process-wide ApiClient (one connection pool), created on first use."""
    global _shared
    with _lock:
        if _shared is None:
            configuration = load_configuration(settings or ClientSettings())
            _shared = kubernetes.client.ApiClient(configuration)
        return _shared


def dedicated_client(client: Client, pool_size: int) -> Client:
    """A client with ``client``'s identity and user agent on a pool of its own: the
    operator's informers hold a watch open per kind and namespace, which must not take
    the connections the reconciles and the ingest API need."""
    configuration = copy.copy(client.configuration)
    configuration.connection_pool_maxsize = pool_size
    dedicated = kubernetes.client.ApiClient(configuration)
    dedicated.user_agent = client.user_agent
    return dedicated


def reset_shared_client() -> None:
    """Forget the shared client (tests that switch clusters, process shutdown)."""
    global _shared
    with _lock:
        if _shared is not None:
            _shared.close()
        _shared = None
