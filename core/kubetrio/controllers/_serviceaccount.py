"""The service-account controller: every active namespace has a ``default`` ServiceAccount.

Namespaces are the primary objects; deleting the ``default`` ServiceAccount enqueues its
namespace, so it comes back (as in Kubernetes).
"""

from __future__ import annotations

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject

from ._objects import is_deleting
from ._reconcile import ControllerContext, QueueController, Result

DEFAULT_NAME = "default"


class ServiceAccountController(QueueController):
    """Creates the ``default`` ServiceAccount in every namespace that is not terminating."""

    name = "serviceaccount"
    workers = 1

    def setup(self, ctx: ControllerContext) -> None:
        """Watch namespaces and service accounts."""
        super().setup(ctx)
        self.namespaces: Informer = ctx.informers.informer("v1", "namespaces")
        self.accounts: Informer = ctx.informers.informer("v1", "serviceaccounts")
        self.namespaces.add_handler(FunctionHandler(self._namespace_changed))
        self.accounts.add_handler(FunctionHandler(self._account_changed))

    def primary(self) -> Informer | None:
        """Namespaces."""
        return self.namespaces

    def _namespace_changed(self, ns: KubeObject) -> None:
        self.queue.add(ns["metadata"]["name"])

    def _account_changed(self, account: KubeObject) -> None:
        if account["metadata"].get("name") == DEFAULT_NAME:
            self.queue.add(account["metadata"].get("namespace", ""))

    async def reconcile(self, key: str) -> Result | None:
        """Create ``default`` in namespace ``key`` if it is missing."""
        ns = self.namespaces.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return None
        if self.accounts.get(DEFAULT_NAME, key) is not None:
            return None
        try:
            await self.client.create(
                "v1",
                "serviceaccounts",
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": DEFAULT_NAME, "namespace": key},
                },
                namespace=key,
            )
        except ClientError as exc:
            if exc.code == 409:
                return None
            if exc.code == 403 or exc.not_found:  # the namespace began terminating
                return None
            raise
        return None
