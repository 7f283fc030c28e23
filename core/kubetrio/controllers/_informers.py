"""Informers for long-running controllers: a watch error never ends them.

:class:`kubetrio.client.Informer` relists on 410 Expired by catching
:class:`~kubetrio.client.ClientError` — but an error raised while a watch streams from
the in-process transport surfaces wrapped in an ``ExceptionGroup`` (the transport's
nursery, with trio's strict exception groups), which that ``except`` does not match,
and the informer task dies. :class:`ResilientInformer` unwraps such groups: expected
errors (client errors, connection errors) start the informer over — relist, then
watch — after a short backoff; anything else still propagates.
:class:`ControllerInformers` is the shared-informer registry the manager uses, handing
out resilient informers.
"""

from __future__ import annotations

import logging
import random

import httpx
import trio

from kubetrio.client import Client, ClientError, Informer

log = logging.getLogger("kubetrio.controllers.informers")

_EXPECTED = (ClientError, httpx.HTTPError, OSError, trio.BrokenResourceError)


class ResilientInformer(Informer):
    """An :class:`Informer` that survives errors wrapped in exception groups."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List and watch until cancelled; ``started`` once the cache is first filled."""
        failures = 0
        while True:
            status = trio.TASK_STATUS_IGNORED if self.synced.is_set() else task_status
            try:
                await super().run(task_status=status)
            except BaseExceptionGroup as group:
                _, rest = group.split(_EXPECTED)
                if rest is not None:
                    raise rest from None
                failures += 1
                log.warning(
                    "%s %s: watch failed, listing again: %s",
                    self.api_version,
                    self.resource,
                    group.exceptions[0],
                )
                await trio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)) * random.uniform(0.5, 1))


class ControllerInformers:
    """One :class:`ResilientInformer` per (resource, namespace, selectors), shared.

    The same contract as :class:`kubetrio.client.SharedInformers`: informers asked for
    before :meth:`run` start with it, later ones start at once in its nursery.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[tuple[str, ...], Informer] = {}
        self._nursery: trio.Nursery | None = None

    def informer(
        self,
        api_version: str,
        resource: str,
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> Informer:
        """The shared informer of a resource (created and started on first use)."""
        key = (api_version, resource, namespace, label_selector, field_selector)
        found = self._informers.get(key)
        if found is None:
            found = ResilientInformer(
                self.client,
                api_version,
                resource,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
            )
            self._informers[key] = found
            if self._nursery is not None:
                self._nursery.start_soon(found.run)
        return found

    async def wait_synced(self) -> None:
        """Wait until every informer created so far has filled its cache."""
        for informer in list(self._informers.values()):
            await informer.synced.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every informer until cancelled; ``started`` once the existing ones synced."""
        async with trio.open_nursery() as nursery:
            for informer in list(self._informers.values()):
                nursery.start_soon(informer.run)
            self._nursery = nursery
            await self.wait_synced()
            task_status.started()
            await trio.sleep_forever()
