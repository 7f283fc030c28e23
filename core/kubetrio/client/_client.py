"""The client every kubetrio component uses to talk to the cluster.

Resources are named as in kubectl's API: an ``api_version`` (``v1``, ``apps/v1``) and a
plural ``resource`` (``pods``, ``deployments``). Objects are JSON dicts. Errors are
:class:`ClientError` carrying the server's Status.
"""

from __future__ import annotations

import dataclasses
import datetime
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from kubetrio.handler import RequestHandler
from kubetrio.kubeobject import KubeObject as KubeObject
from kubetrio.providers import UserInfo

from . import _history
from ._errors import ClientError
from ._transport import HttpTransport, InProcessTransport, Transport

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One watch event: ADDED, MODIFIED, DELETED, BOOKMARK (ERROR raises instead)."""

    type: str
    object: KubeObject


def resource_path(
    api_version: str,
    resource: str,
    *,
    namespace: str = "",
    name: str = "",
    subresource: str = "",
) -> str:
    """The URL path of a collection, object or subresource."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{resource}" if namespace else f"{base}/{resource}"
    if name:
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    return path


def _decode(data: bytes) -> Any:
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:
        raise ClientError(
            {
                "code": 500,
                "reason": "InternalError",
                "message": f"the server sent a body that is not JSON: {exc}",
            }
        ) from exc


class Client:
    """CRUD, patch and watch on the Kubernetes API, over any :class:`Transport`.

    Make one with :meth:`in_process` (embedded control plane) or :meth:`connect` (HTTP).
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @classmethod
    def in_process(
        cls,
        server: RequestHandler,
        *,
        token: str = "",
        loopback: bool = False,
        user: UserInfo | None = None,
    ) -> Client:
        """A client calling ``server`` directly, without HTTP.

        :param token: the bearer token it presents (its identity).
        :param loopback: be the server's own loopback client instead (``system:apiserver``,
            allowed everything, no token) — for the server's internal caches.
        :param user: act as this user, authenticated by being in the process (no
            credential) and authorized as any other: how the cluster's own controllers and
            scheduler get least-privilege identities.
        """
        return cls(InProcessTransport(server, token=token, loopback=loopback, user=user))

    @classmethod
    def connect(
        cls, url: str, *, token: str = "", verify: bool | str | ssl.SSLContext = True
    ) -> Client:
        """A client talking HTTP(S) to the API server at ``url``; ``verify`` as httpx's
        (an ``ssl`` context carries a client certificate too)."""
        return cls(HttpTransport(url, token=token, verify=verify))

    async def aclose(self) -> None:
        """Close the transport's connections."""
        await self.transport.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> KubeObject:
        raw = b"" if body is None else _ENCODER.encode(body)
        response = await self.transport.request(
            method,
            path,
            query={k: v for k, v in (query or {}).items() if v != ""},
            body=raw,
            content_type=content_type,
        )
        value = _decode(response.body) if response.body else {}
        if response.status >= 400:
            if not isinstance(value, dict) or value.get("kind") != "Status":
                value = {"code": response.status, "message": response.body.decode(errors="replace")}
            raise ClientError(value)
        result: KubeObject = value
        return result

    async def get_path(self, path: str) -> KubeObject:
        """GET a path that names no object: discovery documents (``/apis``), ``/version``."""
        return await self._call("GET", path)

    # --- verbs --------------------------------------------------------------------------

    async def get(
        self,
        api_version: str,
        resource: str,
        name: str,
        *,
        namespace: str = "",
        subresource: str = "",
    ) -> KubeObject:
        """One object (or a subresource such as ``scale``)."""
        return await self._call(
            "GET",
            resource_path(
                api_version, resource, namespace=namespace, name=name, subresource=subresource
            ),
        )

    async def list(
        self,
        api_version: str,
        resource: str,
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> KubeObject:
        """A list object (``items``, ``metadata.resourceVersion``, ``metadata.continue``)."""
        return await self._call(
            "GET",
            resource_path(api_version, resource, namespace=namespace),
            query={
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "limit": str(limit) if limit else "",
                "continue": continue_token,
                "resourceVersion": resource_version,
            },
        )

    async def create(
        self,
        api_version: str,
        resource: str,
        obj: KubeObject,
        *,
        namespace: str = "",
        dry_run: bool = False,
        subresource: str = "",
        name: str = "",
        field_manager: str = "",
    ) -> KubeObject:
        """Create an object (or POST to a subresource such as ``binding``)."""
        path = resource_path(
            api_version, resource, namespace=namespace, name=name, subresource=subresource
        )
        query = {"dryRun": "All" if dry_run else "", "fieldManager": field_manager}
        return await self._call("POST", path, body=obj, query=query)

    async def update(
        self,
        api_version: str,
        resource: str,
        obj: KubeObject,
        *,
        namespace: str = "",
        subresource: str = "",
        field_manager: str = "",
    ) -> KubeObject:
        """Replace an object; its ``metadata.resourceVersion`` makes it conditional."""
        name = obj["metadata"]["name"]
        return await self._call(
            "PUT",
            resource_path(
                api_version, resource, namespace=namespace, name=name, subresource=subresource
            ),
            body=obj,
            query={"fieldManager": field_manager},
        )

    async def patch(
        self,
        api_version: str,
        resource: str,
        name: str,
        patch: Any,
        *,
        namespace: str = "",
        patch_type: str = "merge",
        subresource: str = "",
        field_manager: str = "",
    ) -> KubeObject:
        """Patch an object: ``merge``, ``json``, ``strategic`` or ``apply``."""
        return await self._call(
            "PATCH",
            resource_path(
                api_version, resource, namespace=namespace, name=name, subresource=subresource
            ),
            body=patch,
            content_type=PATCH_TYPES[patch_type],
            query={"fieldManager": field_manager or ("kubetrio" if patch_type == "apply" else "")},
        )

    async def delete(
        self,
        api_version: str,
        resource: str,
        name: str,
        *,
        namespace: str = "",
        propagation_policy: str = "",
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, str] | None = None,
    ) -> KubeObject:
        """Delete an object; returns its last state (or the object marked for deletion)."""
        options: KubeObject = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = dict(preconditions)
        return await self._call(
            "DELETE",
            resource_path(api_version, resource, namespace=namespace, name=name),
            body=options,
        )

    # --- history (the ``history`` subresource, see ``_history``) ---------------------------

    async def history(
        self,
        api_version: str,
        resource: str,
        name: str,
        *,
        namespace: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> KubeObject:
        """A page of an object's kept revisions, newest first (a ``RevisionList``); also
        for deleted objects."""
        return await self._call(
            "GET",
            resource_path(
                api_version, resource, namespace=namespace, name=name, subresource="history"
            ),
            query={"limit": str(limit) if limit else "", "continue": continue_token},
        )

    async def history_revision(
        self,
        api_version: str,
        resource: str,
        name: str,
        revision: str | int,
        *,
        namespace: str = "",
    ) -> KubeObject:
        """The ``Revision`` live at resourceVersion ``revision`` (its ``object`` as it was)."""
        path = resource_path(
            api_version, resource, namespace=namespace, name=name, subresource="history"
        )
        return await self._call("GET", f"{path}/{revision}")

    async def history_at(
        self,
        api_version: str,
        resource: str,
        name: str,
        when: datetime.datetime,
        *,
        namespace: str = "",
    ) -> KubeObject:
        """The ``Revision`` live at the time ``when`` (404 if the object did not exist)."""
        return await _history.at_time(self, api_version, resource, name, when, namespace=namespace)

    async def restore(
        self,
        api_version: str,
        resource: str,
        name: str,
        revision: str | int,
        *,
        namespace: str = "",
        resource_version: str = "",
    ) -> KubeObject:
        """Write revision ``revision`` back (an update on ``resource_version``, default the
        current one; a create when the object is gone); 409 when the object changed."""
        return await _history.restore(
            self,
            api_version,
            resource,
            name,
            revision,
            namespace=namespace,
            resource_version=resource_version,
        )

    @asynccontextmanager
    async def watch(
        self,
        api_version: str,
        resource: str,
        *,
        namespace: str = "",
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 0,
        bookmarks: bool = True,
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """Watch a collection: ``async with client.watch(...) as events: async for e in events``.

        An ERROR event raises :class:`ClientError` (410 Expired: list again).
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "timeoutSeconds": str(timeout_seconds) if timeout_seconds else "",
            "allowWatchBookmarks": "true" if bookmarks else "",
        }
        path = resource_path(api_version, resource, namespace=namespace)
        async with self.transport.stream(
            "GET", path, query={k: v for k, v in query.items() if v}
        ) as (status, chunks):
            if status >= 400:
                body = b"".join([chunk async for chunk in chunks])
                value = _decode(body) if body else {"code": status}
                raise ClientError(value if isinstance(value, dict) else {"code": status})
            yield _events(chunks)


async def _events(chunks: AsyncIterator[bytes]) -> AsyncIterator[WatchEvent]:
    """Split a watch stream into events (one JSON object per line)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            event = _decode(line)
            if event.get("type") == "ERROR":
                raise ClientError(event.get("object") or {"code": 500})
            yield WatchEvent(event["type"], event["object"])
