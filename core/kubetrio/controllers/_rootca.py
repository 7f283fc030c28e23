"""The root-ca-cert-publisher: a ``kube-root-ca.crt`` ConfigMap in every namespace.

Its key ``ca.crt`` holds the CA bundle that verifies the API server's certificate, so a
pod can check the server it reaches through the ``kubernetes`` Service (the
ServiceAccount admission plugin projects it into every pod's
``/var/run/secrets/kubernetes.io/serviceaccount/ca.crt``). As kube-controller-manager's
controller: namespaces are the primary objects, and a ConfigMap of that name deleted or
changed enqueues its namespace, so it comes back as it was.
"""

from __future__ import annotations

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject

from ._objects import is_deleting
from ._reconcile import ControllerContext, QueueController, Result

NAME = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using "
    "internal endpoints such as the internal service IP or kubernetes.default.svc. "
    "No other usage is guaranteed across distributions of Kubernetes clusters."
)
"""kube-controller-manager's annotation text, word for word."""


class RootCACertPublisher(QueueController):
    """Keeps ``kube-root-ca.crt`` (``data: {ca.crt: <bundle>}``) in every active namespace.

    :param ca_bundle: the PEM of the CA that signed the API server's serving certificate.
    """

    name = "root-ca-cert-publisher"
    workers = 1

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle

    def setup(self, ctx: ControllerContext) -> None:
        """Watch namespaces and ConfigMaps."""
        super().setup(ctx)
        self.namespaces: Informer = ctx.informers.informer("v1", "namespaces")
        self.config_maps: Informer = ctx.informers.informer("v1", "configmaps")
        self.namespaces.add_handler(FunctionHandler(self._namespace_changed))
        self.config_maps.add_handler(FunctionHandler(self._config_map_changed))

    def primary(self) -> Informer | None:
        """Namespaces."""
        return self.namespaces

    def _namespace_changed(self, ns: KubeObject) -> None:
        self.queue.add(ns["metadata"]["name"])

    def _config_map_changed(self, config_map: KubeObject) -> None:
        if config_map["metadata"].get("name") == NAME:
            self.queue.add(config_map["metadata"].get("namespace", ""))

    def _wanted_data(self) -> dict[str, str]:
        return {"ca.crt": self.ca_bundle}

    async def reconcile(self, key: str) -> Result | None:
        """Create the ConfigMap in namespace ``key``, or put its data back."""
        ns = self.namespaces.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return None
        current = self.config_maps.get(NAME, key)
        try:
            if current is None:
                await self.client.create(
                    "v1",
                    "configmaps",
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": NAME,
                            "namespace": key,
                            "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
                        },
                        "data": self._wanted_data(),
                    },
                    namespace=key,
                )
            elif current.get("data") != self._wanted_data() or current.get("binaryData"):
                updated = {**current, "data": self._wanted_data()}
                updated.pop("binaryData", None)
                meta = dict(current["metadata"])
                meta["annotations"] = {
                    **(meta.get("annotations") or {}),
                    DESCRIPTION_ANNOTATION: DESCRIPTION,
                }
                updated["metadata"] = meta
                await self.client.update("v1", "configmaps", updated, namespace=key)
        except ClientError as exc:
            if exc.code == 409 or exc.code == 403 or exc.not_found:
                # Raced with another write (the informer brings it back here), or the
                # namespace began terminating.
                return None
            raise
        return None
