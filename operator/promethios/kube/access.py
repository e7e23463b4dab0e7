"""Who is asking and what they may do: TokenReview, SubjectAccessReview, viewer requests.

The dashboard authenticates a person by the bearer token they present (a TokenReview made
with the process's identity; RBAC ``create`` on ``tokenreviews``), decides what to show
with SubjectAccessReviews (``create`` on ``subjectaccessreviews``), and makes the few
requests that act or read on the person's behalf (their agent's Events and children, the
acknowledge and suspend patches) with **their own token** through a :class:`ViewerClient`:
a connection pool that carries none of the process's credentials, so the API server
applies the person's RBAC and admission rules, never the operator's.

A TokenReview answer echoes the token; nothing here keeps or returns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes

from .apply import KINDS, MERGE_CONTENT_TYPE, ApiException, request
from .client import Client

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclass(frozen=True)
class Identity:
    """An authenticated user as a TokenReview names them (what a SubjectAccessReview needs)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


def identity_from_review(status: Mapping[str, Any]) -> Identity | None:
    """The user of a TokenReview ``status``; None unless it says authenticated."""
    if status.get("authenticated") is not True:
        return None
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username:
        return None
    extra = user.get("extra") or {}
    return Identity(
        username=username,
        uid=str(user.get("uid") or ""),
        groups=tuple(str(group) for group in user.get("groups") or ()),
        extra=tuple(
            sorted((str(key), tuple(str(v) for v in values or ())) for key, values in extra.items())
        ),
    )


def review_token(client: Client, token: str) -> Identity | None:
    """Authenticate ``token`` with a TokenReview (the API server's own audiences)."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    result = request(client, "POST", TOKEN_REVIEWS, body=body)
    return identity_from_review(result.get("status") or {})


@dataclass(frozen=True)
class Access:
    """One question for a SubjectAccessReview: may the user ``verb`` this resource?"""

    verb: str
    resource: str
    namespace: str
    group: str = "governance.promethios.ai"
    name: str | None = None


def access_review_body(identity: Identity, access: Access) -> dict[str, Any]:
    """The SubjectAccessReview asking ``access`` for ``identity``."""
    attributes: dict[str, Any] = {
        "verb": access.verb,
        "group": access.group,
        "resource": access.resource,
        "namespace": access.namespace,
    }
    if access.name:
        attributes["name"] = access.name
    spec: dict[str, Any] = {
        "user": identity.username,
        "groups": list(identity.groups),
        "resourceAttributes": attributes,
    }
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {key: list(values) for key, values in identity.extra}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def review_access(client: Client, identity: Identity, access: Access) -> bool:
    """Whether RBAC (or any authorizer) allows ``access`` to ``identity``."""
    result = request(client, "POST", ACCESS_REVIEWS, body=access_review_body(identity, access))
    status = result.get("status") or {}
    return status.get("allowed") is True and status.get("denied") is not True


class ViewerClient:
    """Requests made with a viewer's own bearer token, on a pool without our credentials.

    Built from the process's client configuration (server, CA, TLS name, proxy) with every
    credential left out: no client certificate (the API server would authenticate the
    certificate and ignore the token), no token of ours.
    """

    def __init__(self, client: Client, pool_size: int = 4) -> None:
        ours = client.configuration
        config = kubernetes.client.Configuration()
        config.host = ours.host
        config.ssl_ca_cert = ours.ssl_ca_cert
        config.verify_ssl = ours.verify_ssl
        config.tls_server_name = getattr(ours, "tls_server_name", None)
        config.proxy = ours.proxy
        config.no_proxy = getattr(ours, "no_proxy", None)
        config.connection_pool_maxsize = pool_size
        self._api = kubernetes.client.ApiClient(config)

    def request(
        self,
        token: str,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request as the viewer; ApiException (e.g. 403) on non-2xx."""
        return request(
            self._api,
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            headers={"Authorization": f"Bearer {token}"},
        )

    def get(self, token: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object as the viewer may read it; None when it does not exist."""
        try:
            return self.request(token, "GET", KINDS[kind].path(namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def events_of(
        self, token: str, namespace: str, kind: str, name: str, uid: str | None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The core/v1 Events about one object (by kind, name and, if known, uid)."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        if uid:
            selector += f",involvedObject.uid={uid}"
        query = [("fieldSelector", selector), ("limit", str(limit))]
        result = self.request(token, "GET", KINDS["Event"].path(namespace), query=query)
        return list(result.get("items") or [])

    def merge_patch(
        self,
        token: str,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        field_manager: str,
    ) -> dict[str, Any]:
        """A JSON merge patch as the viewer."""
        return self.request(
            token,
            "PATCH",
            KINDS[kind].path(namespace, name),
            query=[("fieldManager", field_manager)],
            body=dict(patch),
            content_type=MERGE_CONTENT_TYPE,
        )

    def close(self) -> None:
        """Close the pool."""
        self._api.close()
