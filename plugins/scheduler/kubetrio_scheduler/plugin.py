"""Entry point of the ``scheduler`` plugin: registers the built-in scheduler plugins."""

from __future__ import annotations

from collections.abc import Callable

from kubetrio.plugins import hookimpl
from kubetrio.providers import SchedulerPlugin

from .default_preemption import DefaultPreemption
from .image_locality import ImageLocality
from .interpod_affinity import InterPodAffinity
from .node_affinity import NodeAffinity
from .node_filters import NodeName, NodeUnschedulable
from .resources import NodeResourcesBalancedAllocation, NodeResourcesFit
from .taints import TaintToleration
from .topology_spread import PodTopologySpread
from .volume_binding import VolumeBinding


@hookimpl
def kubetrio_register_scheduler_plugins(register: Callable[[SchedulerPlugin], None]) -> None:
    """Register the built-in plugins (kube-scheduler's default profile): filters,
    scores, preemption (the post filter) and volume binding."""
    register(NodeName())
    register(NodeUnschedulable())
    register(TaintToleration())
    register(NodeAffinity())
    register(NodeResourcesFit())
    register(VolumeBinding())
    register(PodTopologySpread())
    register(InterPodAffinity())
    register(NodeResourcesBalancedAllocation())
    register(ImageLocality())
    register(DefaultPreemption())
