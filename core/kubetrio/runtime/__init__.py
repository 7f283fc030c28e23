"""The runc container runtime: pod sandboxes, containers, cgroups, OCI specs, CRI logs.

:class:`RuncRuntime` implements :class:`kubetrio.providers.ContainerRuntime`; see its
module for how sandboxes and exit codes work.
"""

from ._cgroups import exists_anywhere as cgroup_exists
from ._logs import parse_record as parse_log_record
from ._runc import RuncRuntime as RuncRuntime
from ._runc import RuntimeFailure as RuntimeFailure
from ._spec import build_spec as build_spec
from ._spec import resolve_args as resolve_args
from ._spec import resolve_user as resolve_user

__all__ = [
    "RuncRuntime",
    "RuntimeFailure",
    "build_spec",
    "cgroup_exists",
    "parse_log_record",
    "resolve_args",
    "resolve_user",
]
