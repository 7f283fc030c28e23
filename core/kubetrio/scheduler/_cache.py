"""The scheduler's cache: every node with the pods bound (or about to be bound) to it.

Informer handlers feed it (nodes; pods that have a ``spec.nodeName``); the scheduling
cycle reads it as the :class:`~kubetrio.providers.NodeSnapshot` and *assumes* the pod it
just placed, so the next cycle sees the node's resources taken before the binding's
round trip to the API server ends. When the informer then reports the pod bound, the
assumed entry is confirmed in place (never counted twice); when the binding fails the
assumption is forgotten.

kube-scheduler copies its cache into a snapshot at the start of each cycle because its
informers run on other goroutines. Here a cycle is one synchronous call on the trio
thread — no handler can run in the middle of it — so the cache is its own snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubetrio.providers import KubeObject, NodeInfo, PodInfo

from ._resources import node_allocatable, pod_info


def _image_sizes(node: KubeObject) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for image in (node.get("status") or {}).get("images") or ():
        for name in image.get("names") or ():
            sizes[name] = int(image.get("sizeBytes") or 0)
    return sizes


class SchedulerCache:
    """Nodes by name, in a stable order, with their pods' aggregates.

    Pods may arrive before their node (informers are independent): such pods wait in
    ``_orphans`` and join the node when it appears.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._order: list[NodeInfo] = []
        self.namespaces: dict[str, dict[str, str]] = {}
        """Namespace name → labels (fed by a namespace informer)."""
        self._pod_node: dict[str, str] = {}
        self._assumed: set[str] = set()
        self._orphans: dict[str, dict[str, PodInfo]] = {}
        self._with_affinity: dict[str, NodeInfo] = {}
        self._image_nodes: dict[str, int] = {}
        self._index: dict[str, int] = {}
        self.order_version = 0
        """Bumped when nodes are added or removed (positions in ``nodes`` move)."""
        self._changes: list[str] = []
        self._changes_base = 0
        """Names of changed nodes, in order; entry i has mark ``_changes_base + i + 1``."""
        self._nominated: dict[str, dict[str, PodInfo]] = {}
        """Node name → pending pods nominated to it (``status.nominatedNodeName``)."""
        self._nominated_node: dict[str, str] = {}

    # --- NodeSnapshot -----------------------------------------------------------------

    @property
    def nodes(self) -> list[NodeInfo]:
        """All nodes in the order they were added (the cycle walks them round-robin)."""
        return self._order

    def index_of(self, name: str) -> int | None:
        """The position of a node in :attr:`nodes`, or None."""
        return self._index.get(name)

    def changed_since(self, mark: int) -> tuple[int, list[str] | None]:
        """The current change mark and the names of the nodes that changed (pods added or
        removed, node replaced, added or deleted) after ``mark``; None instead of names
        when ``mark`` is too old (the caller then recounts from scratch)."""
        current = self._changes_base + len(self._changes)
        if mark < self._changes_base:
            return current, None
        return current, self._changes[mark - self._changes_base :]

    def _changed(self, name: str) -> None:
        if len(self._changes) >= 100_000:  # forget old history; laggards recount
            self._changes_base += len(self._changes)
            self._changes = []
        self._changes.append(name)

    def set_namespace_labels(self, name: str, labels: dict[str, str] | None) -> None:
        """Record a namespace's labels (None: deleted). A change makes every counter that
        plugins keep recount (``namespaceSelector`` terms may select other pods now)."""
        old = self.namespaces.get(name)
        if labels is None:
            self.namespaces.pop(name, None)
        else:
            self.namespaces[name] = labels
        if old != labels and old is not None:
            self._changes_base += len(self._changes) + 1
            self._changes = []

    def image_node_count(self, image: str) -> int:
        """How many nodes report having ``image`` in ``status.images``."""
        return self._image_nodes.get(image, 0)

    def _count_images(self, info: NodeInfo, delta: int) -> None:
        for image in info.images:
            count = self._image_nodes.get(image, 0) + delta
            if count > 0:
                self._image_nodes[image] = count
            else:
                self._image_nodes.pop(image, None)

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The labels of a namespace, empty if unknown."""
        return self.namespaces.get(namespace) or {}

    def get(self, name: str) -> NodeInfo | None:
        """The node called ``name``, or None."""
        return self._nodes.get(name)

    def nodes_with_affinity_pods(self) -> Sequence[NodeInfo]:
        """The nodes holding at least one pod with (anti-)affinity terms."""
        return list(self._with_affinity.values())

    # --- nodes --------------------------------------------------------------------------

    def set_node(self, node: KubeObject) -> NodeInfo:
        """Add or replace a node, keeping the pods already counted on it."""
        name = node["metadata"]["name"]
        info = NodeInfo(node)
        info.allocatable = node_allocatable(node)
        info.images = _image_sizes(node)
        old = self._nodes.get(name)
        self._count_images(info, +1)
        if old is not None:
            self._count_images(old, -1)
            info.requested = old.requested
            info.non_zero_requested = old.non_zero_requested
            info.pods = old.pods
            info.pods_with_affinity = old.pods_with_affinity
            info.pods_with_required_anti_affinity = old.pods_with_required_anti_affinity
            info.generation = old.generation + 1
            self._order[self._index[name]] = info
            if name in self._with_affinity:
                self._with_affinity[name] = info
        else:
            self._index[name] = len(self._order)
            self._order.append(info)
            self.order_version += 1
        self._changed(name)
        self._nodes[name] = info
        for pod in self._orphans.pop(name, {}).values():
            self._add_to_node(info, pod)
        return info

    def remove_node(self, name: str) -> None:
        """Forget a node; its pods wait as orphans in case it comes back."""
        info = self._nodes.pop(name, None)
        if info is None:
            return
        self._order.remove(info)
        self._index = {node.name: i for i, node in enumerate(self._order)}
        self.order_version += 1
        self._changed(name)
        self._count_images(info, -1)
        self._with_affinity.pop(name, None)
        if info.pods:
            self._orphans[name] = dict(info.pods)

    # --- pods ---------------------------------------------------------------------------

    def _add_to_node(self, node: NodeInfo, pod: PodInfo) -> None:
        if node.add_pod(pod):
            self._with_affinity[node.name] = node
        self._changed(node.name)

    def _remove_from_node(self, node: NodeInfo, key: str) -> None:
        if node.remove_pod(key) and not node.pods_with_affinity:
            self._with_affinity.pop(node.name, None)
        self._changed(node.name)

    def _place(self, info: PodInfo, node_name: str) -> None:
        node = self._nodes.get(node_name)
        if node is None:
            self._orphans.setdefault(node_name, {})[info.key] = info
        else:
            self._add_to_node(node, info)
        self._pod_node[info.key] = node_name

    def _unplace(self, key: str) -> None:
        node_name = self._pod_node.pop(key, None)
        if node_name is None:
            return
        node = self._nodes.get(node_name)
        if node is not None:
            self._remove_from_node(node, key)
        else:
            self._orphans.get(node_name, {}).pop(key, None)

    def assume(self, info: PodInfo, node_name: str) -> None:
        """Count a pod on the node chosen for it, before its binding is confirmed."""
        self._unplace(info.key)
        info.node_name = node_name
        self._place(info, node_name)
        self._assumed.add(info.key)

    def forget(self, key: str) -> None:
        """Undo :meth:`assume` (the binding failed)."""
        if key in self._assumed:
            self._assumed.discard(key)
            self._unplace(key)

    def is_assumed(self, key: str) -> bool:
        """Whether a pod is counted on a node only because this scheduler placed it."""
        return key in self._assumed

    def set_pod(self, pod: KubeObject) -> None:
        """Add or update an assigned pod (one with ``spec.nodeName``), or drop a finished one."""
        metadata = pod["metadata"]
        key = f"{metadata.get('namespace') or ''}/{metadata['name']}"
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):  # a finished pod frees its node's resources
            self.remove_pod(key)
            return
        node_name = pod["spec"]["nodeName"]
        if key in self._assumed and self._pod_node.get(key) == node_name:
            # The binding we made, seen by the informer: confirm in place (the spec that
            # the requests come from cannot change once a pod is bound).
            self._assumed.discard(key)
            node = self._nodes.get(node_name)
            held = node.pods.get(key) if node is not None else None
            if held is not None:
                held.pod = pod
                held.labels = metadata.get("labels") or {}
                return
        info = pod_info(pod)
        self._assumed.discard(info.key)
        self._unplace(info.key)
        self._place(info, info.node_name)

    def remove_pod(self, key: str) -> None:
        """Forget a pod (deleted, finished)."""
        self._assumed.discard(key)
        self._unplace(key)

    def pod_node(self, key: str) -> str | None:
        """The node a pod is counted on, or None."""
        return self._pod_node.get(key)

    # --- nominations --------------------------------------------------------------------

    def nominate(self, info: PodInfo, node_name: str) -> None:
        """Record that a pending pod waits for room on ``node_name`` (it preempted pods
        there). Later cycles count the pod on that node against pods of lower priority
        (kube-scheduler's nominator)."""
        self.clear_nomination(info.key)
        self._nominated_node[info.key] = node_name
        self._nominated.setdefault(node_name, {})[info.key] = info

    def clear_nomination(self, key: str) -> None:
        """Forget the nomination of the pod ``key`` (bound, deleted, or no longer helped)."""
        old = self._nominated_node.pop(key, None)
        if old is not None:
            held = self._nominated.get(old, {})
            held.pop(key, None)
            if not held:
                self._nominated.pop(old, None)

    def has_nominations(self) -> bool:
        """Whether any pending pod is nominated to a node."""
        return bool(self._nominated_node)

    def nominated_pods(self, node_name: str) -> list[PodInfo]:
        """The pending pods nominated to ``node_name``."""
        return list(self._nominated.get(node_name, {}).values())

    def nominated_node(self, key: str) -> str:
        """The node the pending pod ``key`` is nominated to, or ``""``."""
        return self._nominated_node.get(key, "")
