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


# Plain string paths and bytes: a scrape reads a few files per cgroup, and pathlib's
# object churn was a third of the cost.
def _read_int(path: str) -> int:
    with open(path, "rb") as file:
        return int(file.read().split()[0])


def _read_keyed(path: str) -> dict[bytes, int]:
    """A flat-keyed cgroup file (``memory.stat``, ``cpu.stat``) as a dict."""
    with open(path, "rb") as file:
        words = file.read().split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def _working_set(usage: int, inactive_file: int) -> int:
    # cAdvisor subtracts the inactive file cache only when it is below usage.
    return usage - inactive_file if inactive_file < usage else 0


def read_cgroup(
    path: str, *, root: Path = CGROUP_ROOT, unified: bool | None = None
) -> Usage | None:
    """The usage of the cgroup at ``path`` (``/kubetrio/<pod uid>[/<container>]``);
    None when it does not exist (the container is gone or not yet created).
    ``unified``: whether ``root`` is v2, when the caller knows (else it is looked at)."""
    relative = path.strip("/")
    now = time.time()
    top = str(root)
    try:
        if is_unified(root) if unified is None else unified:
            directory = f"{top}/{relative}"
            cpu = _read_keyed(f"{directory}/cpu.stat")
            memory = _read_int(f"{directory}/memory.current")
            stat = _read_keyed(f"{directory}/memory.stat")
            return Usage(
                time=now,
                cpu_ns=cpu.get(b"usage_usec", 0) * 1000,
                memory_usage=memory,
                memory_working_set=_working_set(memory, stat.get(b"inactive_file", 0)),
                memory_rss=stat.get(b"anon", 0),
                page_faults=stat.get(b"pgfault", 0),
                major_page_faults=stat.get(b"pgmajfault", 0),
            )
        cpu_ns = _read_int(f"{top}/cpuacct/{relative}/cpuacct.usage")
        memory = _read_int(f"{top}/memory/{relative}/memory.usage_in_bytes")
        stat = _read_keyed(f"{top}/memory/{relative}/memory.stat")
    except (FileNotFoundError, NotADirectoryError, ValueError, IndexError):
        return None
    return _v1_usage(now, cpu_ns, memory, stat)


def _v1_usage(now: float, cpu_ns: int, memory: int, stat: dict[bytes, int]) -> Usage:
    # The total_* keys count the whole subtree (a pod's containers); a leaf has both.
    inactive = stat.get(b"total_inactive_file", stat.get(b"inactive_file", 0))
    return Usage(
        time=now,
        cpu_ns=cpu_ns,
        memory_usage=memory,
        memory_working_set=_working_set(memory, inactive),
        memory_rss=stat.get(b"total_rss", stat.get(b"rss", 0)),
        page_faults=stat.get(b"total_pgfault", stat.get(b"pgfault", 0)),
        major_page_faults=stat.get(b"total_pgmajfault", stat.get(b"pgmajfault", 0)),
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
            cpu = _read_keyed(f"{root}/cpu.stat")
            info = _meminfo(proc)
            # As libcontainer's rootStatsFromMeminfo: used = total - free.
            memory = info["MemTotal"] - info["MemFree"]
            return Usage(
                time=now,
                cpu_ns=cpu.get(b"usage_usec", 0) * 1000,
                memory_usage=memory,
                memory_working_set=_working_set(memory, info.get("Inactive(file)", 0)),
                memory_rss=info.get("AnonPages", 0),
            )
        cpu_ns = _read_int(f"{root}/cpuacct/cpuacct.usage")
        memory = _read_int(f"{root}/memory/memory.usage_in_bytes")
        stat = _read_keyed(f"{root}/memory/memory.stat")
    except (FileNotFoundError, KeyError, ValueError, IndexError):
        return None
    return _v1_usage(now, cpu_ns, memory, stat)


def memory_capacity(proc: Path = PROC_ROOT) -> int | None:
    """The node's memory (``MemTotal``), for the Summary API's ``availableBytes``."""
    try:
        return _meminfo(proc).get("MemTotal")
    except OSError:
        return None
