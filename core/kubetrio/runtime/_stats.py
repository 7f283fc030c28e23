"""Resource usage read from cgroups: cumulative CPU time and memory working set.

What kubelet gets from cAdvisor for its Summary API and ``/metrics/resource``, read
straight from the cgroup files:

- **CPU**: the cumulative usage in nanoseconds — ``cpuacct.usage`` (v1) or
  ``usage_usec`` of ``cpu.stat`` times 1000 (v2).
- **Memory working set**: usage minus the inactive file cache, as cAdvisor computes it
  (``memory.usage_in_bytes`` minus ``total_inactive_file`` of ``memory.stat`` on v1,
  ``memory.current`` minus ``inactive_file`` on v2; never below zero).

The node's figures come from the root cgroup (v1: its ``cpuacct``/``memory`` files,
which account the whole machine; v2: ``cpu.stat`` of the root, and memory from
``/proc/meminfo`` as runc's libcontainer does, the v2 root having no ``memory.current``).

A host is v2 when its cgroup root itself is the unified tree (``cgroup.controllers`` at
the root); a hybrid host (v1 controllers plus an empty ``unified`` tree) reads v1.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ._cgroups import CGROUP_ROOT

PROC_ROOT = Path("/proc")


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """One cgroup's (or the node's) usage at ``time`` (seconds since the epoch)."""

    time: float
    cpu_ns: int
    """Cumulative CPU time, nanoseconds (``usageCoreNanoSeconds``)."""
    memory_usage: int
    """Bytes charged, page cache included (``usageBytes``)."""
    memory_working_set: int
    """``usageBytes`` less inactive file pages (``workingSetBytes``)."""
    memory_rss: int = 0
    """Anonymous memory (``rssBytes``)."""
    page_faults: int = 0
    major_page_faults: int = 0


def is_unified(root: Path = CGROUP_ROOT) -> bool:
    """Whether ``root`` is a cgroup v2 (unified) hierarchy rather than v1 controllers."""
    return (root / "cgroup.controllers").exists()


def _read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def _read_keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file (``memory.stat``, ``cpu.stat``) as a dict."""
    values: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def _working_set(usage: int, inactive_file: int) -> int:
    # cAdvisor subtracts the inactive file cache only when it is below usage.
    return usage - inactive_file if inactive_file < usage else 0


def read_cgroup(path: str, *, root: Path = CGROUP_ROOT) -> Usage | None:
    """The usage of the cgroup at ``path`` (``/kubetrio/<pod uid>[/<container>]``);
    None when it does not exist (the container is gone or not yet created)."""
    relative = path.strip("/")
    now = time.time()
    try:
        if is_unified(root):
            directory = root / relative
            cpu = _read_keyed(directory / "cpu.stat")
            memory = _read_int(directory / "memory.current")
            stat = _read_keyed(directory / "memory.stat")
            return Usage(
                time=now,
                cpu_ns=cpu.get("usage_usec", 0) * 1000,
                memory_usage=memory,
                memory_working_set=_working_set(memory, stat.get("inactive_file", 0)),
                memory_rss=stat.get("anon", 0),
                page_faults=stat.get("pgfault", 0),
                major_page_faults=stat.get("pgmajfault", 0),
            )
        cpu_ns = _read_int(root / "cpuacct" / relative / "cpuacct.usage")
        memory_dir = root / "memory" / relative
        memory = _read_int(memory_dir / "memory.usage_in_bytes")
        stat = _read_keyed(memory_dir / "memory.stat")
    except (FileNotFoundError, NotADirectoryError, ValueError, IndexError):
        return None
    return _v1_usage(now, cpu_ns, memory, stat)


def _v1_usage(now: float, cpu_ns: int, memory: int, stat: dict[str, int]) -> Usage:
    # The total_* keys count the whole subtree (a pod's containers); a leaf has both.
    inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    return Usage(
        time=now,
        cpu_ns=cpu_ns,
        memory_usage=memory,
        memory_working_set=_working_set(memory, inactive),
        memory_rss=stat.get("total_rss", stat.get("rss", 0)),
        page_faults=stat.get("total_pgfault", stat.get("pgfault", 0)),
        major_page_faults=stat.get("total_pgmajfault", stat.get("pgmajfault", 0)),
    )


def _meminfo(proc: Path) -> dict[str, int]:
    """``/proc/meminfo`` in bytes."""
    values: dict[str, int] = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return values


def read_node(*, root: Path = CGROUP_ROOT, proc: Path = PROC_ROOT) -> Usage | None:
    """The whole node's usage (its root cgroup); None when it cannot be read."""
    now = time.time()
    try:
        if is_unified(root):
            cpu = _read_keyed(root / "cpu.stat")
            info = _meminfo(proc)
            # As libcontainer's rootStatsFromMeminfo: used = total - free.
            memory = info["MemTotal"] - info["MemFree"]
            return Usage(
                time=now,
                cpu_ns=cpu.get("usage_usec", 0) * 1000,
                memory_usage=memory,
                memory_working_set=_working_set(memory, info.get("Inactive(file)", 0)),
                memory_rss=info.get("AnonPages", 0),
            )
        cpu_ns = _read_int(root / "cpuacct" / "cpuacct.usage")
        memory = _read_int(root / "memory" / "memory.usage_in_bytes")
        stat = _read_keyed(root / "memory" / "memory.stat")
    except (FileNotFoundError, KeyError, ValueError, IndexError):
        return None
    return _v1_usage(now, cpu_ns, memory, stat)


def memory_capacity(proc: Path = PROC_ROOT) -> int | None:
    """The node's memory (``MemTotal``), for the Summary API's ``availableBytes``."""
    try:
        return _meminfo(proc).get("MemTotal")
    except OSError:
        return None
