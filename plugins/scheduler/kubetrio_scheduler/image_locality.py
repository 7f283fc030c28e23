"""ImageLocality: prefer nodes that already have the pod's images (``status.images``).

As kube-scheduler: each image present on the node counts its size scaled by the share of
nodes that have it (so an image present everywhere does not pull every pod to one
node); the sum is clamped between 23 MB and 1000 MB per container and mapped to 0..100.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubetrio.providers import SKIP, CycleState, NodeInfo, PodInfo

MAX_NODE_SCORE = 100
MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def normalized_image(name: str) -> str:
    """``nginx`` → ``nginx:latest`` (a reference without tag or digest means latest)."""
    last = name.rsplit("/", 1)[-1]
    if "@" in last or ":" in last:
        return name
    return name + ":latest"


class ImageLocality:
    """Scores nodes by the size of the pod's images they already hold."""

    name = "ImageLocality"
    weight = 1

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        """Find the images' spread over all nodes; skip when no feasible node has one."""
        spec = pod.pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]
        images = {normalized_image(str(c.get("image") or "")) for c in containers}
        snapshot = state.snapshot
        total = max(len(snapshot.nodes), 1)
        spread = {image: snapshot.image_node_count(image) / total for image in images}
        spread = {image: share for image, share in spread.items() if share}
        if not spread:
            return SKIP  # no node has any of the images: every node would score 0
        state[self.name] = (spread, len(containers) or 1)
        return None

    def score(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> int:
        """0..100 from the scaled sizes of the images present."""
        spread, containers = state[self.name]
        total = sum(node.images.get(image, 0) * share for image, share in spread.items())
        high = MAX_CONTAINER_THRESHOLD * containers
        total = min(max(total, MIN_THRESHOLD), high)
        return int(MAX_NODE_SCORE * (total - MIN_THRESHOLD) / (high - MIN_THRESHOLD))
