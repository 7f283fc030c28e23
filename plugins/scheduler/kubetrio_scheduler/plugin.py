"""Entry point of the ``scheduler`` plugin: registers the built-in scheduler plugins."""

from __future__ import annotations

from collections.abc import Callable

from kubetrio.plugins import hookimpl
from kubetrio.providers import SchedulerPlugin

from .node_filters import NodeName, NodeUnschedulable


@hookimpl
def kubetrio_register_scheduler_plugins(register: Callable[[SchedulerPlugin], None]) -> None:
    """Register the built-in filter and score plugins."""
    register(NodeName())
    register(NodeUnschedulable())
