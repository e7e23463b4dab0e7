"""What the dashboard does with the viewer's own token: Events, children, the two patches.

The API server applies the viewer's RBAC (and admission) to each of these requests; a
refusal comes back as :class:`ViewerError` with its HTTP status. :class:`KubeViewer` runs
the synchronous client off the event loop; tests use a fake with the same methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from ..kube.access import ViewerClient
from ..kube.apply import ApiException
from ..kube.client import Client

#: Field manager of the dashboard's patches (as the viewer: the audit log names them).
FIELD_MANAGER = "promethios-dashboard"


class ViewerError(Exception):
    """The API server refused or failed a request made with the viewer's token."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class Viewer(Protocol):
    """Requests on the viewer's behalf, with their token."""

    async def events(
        self, token: str, namespace: str, name: str, uid: str
    ) -> list[dict[str, Any]]: ...

    async def child(
        self, token: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None: ...

    async def patch_agent(
        self, token: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None: ...


class KubeViewer:
    """:class:`Viewer` over a :class:`~promethios.kube.access.ViewerClient`."""

    def __init__(self, api: Client) -> None:
        self._client = ViewerClient(api)

    async def events(self, token: str, namespace: str, name: str, uid: str) -> list[dict[str, Any]]:
        """Events about the GovernedAgent."""
        result: list[dict[str, Any]] = await self._call(
            self._client.events_of, token, namespace, "GovernedAgent", name, uid
        )
        return result

    async def child(
        self, token: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """One child, None when absent."""
        result: dict[str, Any] | None = await self._call(
            self._client.get, token, kind, namespace, name
        )
        return result

    async def patch_agent(
        self, token: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None:
        """Merge-patch the GovernedAgent's spec as the viewer."""
        await self._call(
            self._client.merge_patch, token, "GovernedAgent", namespace, name, patch, FIELD_MANAGER
        )

    async def _call(self, function: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args)
        except ApiException as error:
            raise ViewerError(int(error.status or 502)) from None

    def close(self) -> None:
        """Close the viewer pool."""
        self._client.close()
