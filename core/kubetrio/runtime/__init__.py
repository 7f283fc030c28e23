"""The runc container runtime: pod sandboxes, containers, cgroups, OCI specs, CRI logs.

:class:`RuncRuntime` implements :class:`kubetrio.providers.ContainerRuntime`; see its
module for how sandboxes and exit codes work.
"""

from ._cgroups import CGROUP_ROOT as CGROUP_ROOT
from ._cgroups import exists_anywhere as cgroup_exists
from ._logs import parse_record as parse_log_record
from ._runc import RuncRuntime as RuncRuntime
from ._runc import RuntimeFailure as RuntimeFailure
from ._spec import build_spec as build_spec
from ._spec import resolve_args as resolve_args
from ._spec import resolve_user as resolve_user
from ._stats import Usage as ResourceUsage
from ._stats import is_unified as is_cgroup_unified
from ._stats import memory_capacity as memory_capacity
from ._stats import read_cgroup as read_cgroup_usage
from ._stats import read_node as read_node_usage

__all__ = [
    "CGROUP_ROOT",
    "ResourceUsage",
    "RuncRuntime",
    "RuntimeFailure",
    "build_spec",
    "cgroup_exists",
    "is_cgroup_unified",
    "memory_capacity",
    "parse_log_record",
    "read_cgroup_usage",
    "read_node_usage",
    "resolve_args",
    "resolve_user",
]
