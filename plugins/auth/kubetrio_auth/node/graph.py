"""Which objects each node's pods reference: the Node authorizer's graph.

As upstream's ``plugin/pkg/auth/authorizer/node`` graph, reduced to what a lookup needs:
every pod bound to a node (``spec.nodeName``) gives that node a path to the Secrets,
ConfigMaps, PersistentVolumeClaims and ServiceAccount it references; a
PersistentVolume is reachable through the claim its ``spec.claimRef`` names, and the
Secrets a reachable PersistentVolume references are reachable through it. The index is
kept current by the handlers of the API server's pod and PersistentVolume caches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from kubetrio.providers import KubeObject, ObjectCache

Ref = tuple[str, str, str]
"""(resource, namespace, name) of an object a pod references."""

SECRET_VOLUME_FIELDS = {
    # volume source → the field naming its Secret (upstream's VisitPodSecretNames)
    "azureFile": "secretName",
    "cephfs": "secretRef",
    "cinder": "secretRef",
    "flexVolume": "secretRef",
    "rbd": "secretRef",
    "scaleIO": "secretRef",
    "iscsi": "secretRef",
    "storageos": "secretRef",
    "csi": "nodePublishSecretRef",
}
PV_SECRET_FIELDS = (
    "nodePublishSecretRef",
    "nodeStageSecretRef",
    "nodeExpandSecretRef",
    "controllerPublishSecretRef",
    "controllerExpandSecretRef",
)


def _containers(spec: KubeObject) -> Iterator[KubeObject]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or ()


def pod_references(pod: KubeObject) -> set[Ref]:
    """The Secrets, ConfigMaps, claims and ServiceAccount a pod uses (upstream's
    ``VisitPodSecretNames``/``VisitPodConfigmapNames``, claims of ephemeral volumes
    included)."""
    namespace = pod["metadata"].get("namespace") or "default"
    spec = pod.get("spec") or {}
    refs: set[Ref] = set()

    def add(resource: str, name: object) -> None:
        if name:
            refs.add((resource, namespace, str(name)))

    # A pod without one runs as "default" (what the ServiceAccount admission plugin sets).
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    add("serviceaccounts", account)
    for secret in spec.get("imagePullSecrets") or ():
        add("secrets", secret.get("name"))
    for container in _containers(spec):
        for source in container.get("envFrom") or ():
            add("secrets", (source.get("secretRef") or {}).get("name"))
            add("configmaps", (source.get("configMapRef") or {}).get("name"))
        for env in container.get("env") or ():
            value_from = env.get("valueFrom") or {}
            add("secrets", (value_from.get("secretKeyRef") or {}).get("name"))
            add("configmaps", (value_from.get("configMapKeyRef") or {}).get("name"))
    for volume in spec.get("volumes") or ():
        add("secrets", (volume.get("secret") or {}).get("secretName"))
        add("configmaps", (volume.get("configMap") or {}).get("name"))
        for source, field in SECRET_VOLUME_FIELDS.items():
            value = (volume.get(source) or {}).get(field)
            add("secrets", value.get("name") if isinstance(value, dict) else value)
        for projected in (volume.get("projected") or {}).get("sources") or ():
            add("secrets", (projected.get("secret") or {}).get("name"))
            add("configmaps", (projected.get("configMap") or {}).get("name"))
        add("persistentvolumeclaims", (volume.get("persistentVolumeClaim") or {}).get("claimName"))
        if volume.get("ephemeral") is not None:  # the claim the ephemeral controller makes
            add("persistentvolumeclaims", f"{pod['metadata'].get('name')}-{volume.get('name')}")
    return refs


def pv_secrets(pv: KubeObject) -> set[tuple[str, str]]:
    """(namespace, name) of the Secrets a PersistentVolume references."""
    spec = pv.get("spec") or {}
    found: set[tuple[str, str]] = set()
    for source, field in SECRET_VOLUME_FIELDS.items():
        ref = (spec.get(source) or {}).get(field)
        if isinstance(ref, dict) and ref.get("name"):
            found.add((str(ref.get("namespace") or ""), str(ref["name"])))
    for field in PV_SECRET_FIELDS:
        ref = (spec.get("csi") or {}).get(field) or {}
        if ref.get("name"):
            found.add((str(ref.get("namespace") or ""), str(ref["name"])))
    return found


class NodeGraph:
    """The index: which node reaches which object, from the pods and PVs seen so far."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], tuple[str, set[Ref]]] = {}
        """(namespace, name) of each bound pod → (its node, what it references)."""
        self.reach: dict[Ref, Counter[str]] = {}
        """An object → how many pods of each node reference it."""
        self.pv_claims: dict[str, tuple[str, str]] = {}
        """A PersistentVolume → the (namespace, name) of the claim it is bound to."""
        self.secret_pvs: dict[tuple[str, str], set[str]] = {}
        """A Secret → the PersistentVolumes that reference it."""
        self.pv_secret_refs: dict[str, set[tuple[str, str]]] = {}

    def follow(self, pods: ObjectCache, volumes: ObjectCache | None) -> None:
        """Keep the index current from these caches."""
        pods.add_handler(_PodHandler(self))
        if volumes is not None:
            volumes.add_handler(_VolumeHandler(self))

    # --- pods ---------------------------------------------------------------------------

    def set_pod(self, pod: KubeObject) -> None:
        """Index a pod as it is now (unbound pods reference nothing yet)."""
        self.remove_pod(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            return
        key = (pod["metadata"].get("namespace") or "default", pod["metadata"]["name"])
        refs = pod_references(pod)
        self.pods[key] = (str(node), refs)
        for ref in refs:
            self.reach.setdefault(ref, Counter())[str(node)] += 1

    def remove_pod(self, pod: KubeObject) -> None:
        """Forget a pod."""
        key = (pod["metadata"].get("namespace") or "default", pod["metadata"]["name"])
        known = self.pods.pop(key, None)
        if known is None:
            return
        node, refs = known
        for ref in refs:
            counts = self.reach.get(ref)
            if counts is None:
                continue
            counts[node] -= 1
            if counts[node] <= 0:
                del counts[node]
            if not counts:
                del self.reach[ref]

    # --- persistent volumes -------------------------------------------------------------

    def set_volume(self, pv: KubeObject) -> None:
        """Index a PersistentVolume's claim and Secrets."""
        self.remove_volume(pv)
        name = pv["metadata"]["name"]
        claim = (pv.get("spec") or {}).get("claimRef") or {}
        if claim.get("name"):
            self.pv_claims[name] = (str(claim.get("namespace") or ""), str(claim["name"]))
        secrets = pv_secrets(pv)
        self.pv_secret_refs[name] = secrets
        for secret in secrets:
            self.secret_pvs.setdefault(secret, set()).add(name)

    def remove_volume(self, pv: KubeObject) -> None:
        """Forget a PersistentVolume."""
        name = pv["metadata"]["name"]
        self.pv_claims.pop(name, None)
        for secret in self.pv_secret_refs.pop(name, set()):
            names = self.secret_pvs.get(secret)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.secret_pvs[secret]

    # --- lookups ------------------------------------------------------------------------

    def reaches(self, node: str, resource: str, namespace: str, name: str) -> bool:
        """Whether ``node`` has a path to the object: a pod bound to it references it,
        or (PersistentVolumes, their Secrets) through such a pod's claim."""
        if resource == "persistentvolumes":
            claim = self.pv_claims.get(name)
            return claim is not None and self.reaches(
                node, "persistentvolumeclaims", claim[0], claim[1]
            )
        counts = self.reach.get((resource, namespace, name))
        if counts is not None and counts[node] > 0:
            return True
        if resource == "secrets":
            return any(
                self.reaches(node, "persistentvolumes", "", pv)
                for pv in self.secret_pvs.get((namespace, name), ())
            )
        return False


class _PodHandler:
    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph

    def on_add(self, obj: KubeObject) -> None:
        self.graph.set_pod(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.graph.set_pod(new)

    def on_delete(self, obj: KubeObject) -> None:
        self.graph.remove_pod(obj)


class _VolumeHandler:
    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph

    def on_add(self, obj: KubeObject) -> None:
        self.graph.set_volume(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.graph.set_volume(new)

    def on_delete(self, obj: KubeObject) -> None:
        self.graph.remove_volume(obj)
