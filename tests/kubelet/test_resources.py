"""CPU and memory from cgroups (fixture trees of v1 and v2) and the agent's resource
metrics: the Summary API fields and ``/metrics/resource`` as kubelet exposes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kubetrio.kubelet._containers import ContainerRecord
from kubetrio.kubelet._resources import (
    ResourceSampler,
    cpu_stats,
    memory_stats,
    resource_metrics,
)
from kubetrio.runtime import read_cgroup_usage, read_node_usage

GiB = 1024**3


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_cgroup(root: Path, relative: str, *, cpu_ns: int, usage: int, inactive: int) -> None:
    """The files of one cgroup in the cpuacct and memory v1 hierarchies."""
    write(root / "cpuacct" / relative / "cpuacct.usage", f"{cpu_ns}\n")
    write(root / "memory" / relative / "memory.usage_in_bytes", f"{usage}\n")
    write(
        root / "memory" / relative / "memory.stat",
        f"cache 100\nrss 7\ninactive_file 1\ntotal_cache 200\ntotal_rss {usage // 2}\n"
        f"total_inactive_file {inactive}\ntotal_pgfault 11\ntotal_pgmajfault 2\n",
    )


def v2_cgroup(root: Path, relative: str, *, usec: int, current: int, inactive: int) -> None:
    directory = root / relative
    write(directory / "cpu.stat", f"usage_usec {usec}\nuser_usec 1\nsystem_usec 2\n")
    write(directory / "memory.current", f"{current}\n")
    write(
        directory / "memory.stat",
        f"anon 4096\nfile 9\ninactive_file {inactive}\npgfault 5\npgmajfault 1\n",
    )


def test_v1_cgroup_reads_cpuacct_and_working_set(tmp_path: Path) -> None:
    v1_cgroup(tmp_path, "kubetrio/uid/app", cpu_ns=123_456_789, usage=10 * 4096, inactive=4096)
    found = read_cgroup_usage("/kubetrio/uid/app", root=tmp_path)
    assert found is not None
    assert found.cpu_ns == 123_456_789
    assert found.memory_usage == 10 * 4096
    # working set = usage - total_inactive_file (the subtree's), as cAdvisor computes it
    assert found.memory_working_set == 9 * 4096
    assert (found.memory_rss, found.page_faults, found.major_page_faults) == (5 * 4096, 11, 2)


def test_working_set_never_negative(tmp_path: Path) -> None:
    v1_cgroup(tmp_path, "kubetrio/uid", cpu_ns=1, usage=4096, inactive=8192)
    found = read_cgroup_usage("/kubetrio/uid", root=tmp_path)
    assert found is not None and found.memory_working_set == 0


def test_v2_cgroup_reads_cpu_stat_and_memory_current(tmp_path: Path) -> None:
    write(tmp_path / "cgroup.controllers", "cpu memory pids\n")
    v2_cgroup(tmp_path, "kubetrio/uid/app", usec=2_500_000, current=20 * 4096, inactive=3 * 4096)
    found = read_cgroup_usage("/kubetrio/uid/app", root=tmp_path)
    assert found is not None
    assert found.cpu_ns == 2_500_000_000
    assert (found.memory_usage, found.memory_working_set) == (20 * 4096, 17 * 4096)
    assert found.memory_rss == 4096


def test_missing_cgroup_is_none(tmp_path: Path) -> None:
    assert read_cgroup_usage("/kubetrio/gone/app", root=tmp_path) is None
    write(tmp_path / "cgroup.controllers", "cpu memory\n")
    assert read_cgroup_usage("/kubetrio/gone/app", root=tmp_path) is None


def test_node_v1_from_root_cgroup(tmp_path: Path) -> None:
    v1_cgroup(tmp_path, "", cpu_ns=9_000_000_000, usage=2 * GiB, inactive=GiB // 2)
    found = read_node_usage(root=tmp_path, proc=tmp_path / "proc")
    assert found is not None
    assert (found.cpu_ns, found.memory_working_set) == (9_000_000_000, GiB + GiB // 2)


def test_node_v2_memory_from_meminfo(tmp_path: Path) -> None:
    write(tmp_path / "cgroup.controllers", "cpu memory\n")
    write(tmp_path / "cpu.stat", "usage_usec 7000000\n")
    write(
        tmp_path / "proc" / "meminfo",
        "MemTotal:       4000 kB\nMemFree:        1000 kB\nInactive(file):  500 kB\n"
        "AnonPages:       700 kB\n",
    )
    found = read_node_usage(root=tmp_path, proc=tmp_path / "proc")
    assert found is not None
    assert found.cpu_ns == 7_000_000_000
    assert found.memory_usage == 3000 * 1024  # total - free, as libcontainer's root stats
    assert found.memory_working_set == 2500 * 1024
    assert found.memory_rss == 700 * 1024


class FakeWorker:
    """What the sampler reads of a pod worker."""

    def __init__(self, uid: str, name: str, containers: dict[str, str]) -> None:
        self.uid, self.name, self.namespace = uid, name, "team"
        self.records = [
            ContainerRecord(name=c, image="busybox", state={"running": {"startedAt": at}})
            for c, at in containers.items()
        ]
        self.init_records: list[ContainerRecord] = [
            ContainerRecord(name="init", image="busybox", state={"terminated": {"exitCode": 0}})
        ]


def sampler_tree(tmp_path: Path, cpu_ns: int) -> None:
    v1_cgroup(tmp_path, "", cpu_ns=cpu_ns * 10, usage=GiB, inactive=0)
    v1_cgroup(tmp_path, "kubetrio/u1", cpu_ns=cpu_ns, usage=8 * 4096, inactive=0)
    v1_cgroup(tmp_path, "kubetrio/u1/app", cpu_ns=cpu_ns, usage=8 * 4096, inactive=4096)


def test_sampler_rates_between_reads_and_exposition(tmp_path: Path) -> None:
    write(tmp_path / "proc" / "meminfo", "MemTotal: 2097152 kB\n")
    sampler = ResourceSampler("/kubetrio", root=tmp_path, proc=tmp_path / "proc")
    worker: Any = FakeWorker("u1", "web", {"app": "2026-01-02T03:04:05Z"})
    sampler_tree(tmp_path, 1_000_000_000)
    first = sampler.sample([worker])
    assert first.pods[0].containers[0].nano_cores is None  # no previous read yet
    sampler_tree(tmp_path, 3_000_000_000)
    second = sampler.sample([worker])
    pod = second.pods[0]
    (app,) = pod.containers  # the terminated init container is not reported
    elapsed = app.usage.time - first.pods[0].containers[0].usage.time
    assert app.nano_cores == int(2_000_000_000 / elapsed)
    assert not second.error

    stats = cpu_stats(app.usage, app.nano_cores)
    assert stats["usageCoreNanoSeconds"] == 3_000_000_000
    assert stats["usageNanoCores"] == app.nano_cores
    memory = memory_stats(second.node, sampler.memory_capacity()) if second.node else {}
    assert memory["workingSetBytes"] == GiB and memory["availableBytes"] == GiB

    text = resource_metrics(second).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("container", "app"), ("namespace", "team"), ("pod", "web"))
    cpu = samples[("container_cpu_usage_seconds_total", labels)]
    assert cpu.value == 3.0
    assert cpu.timestamp is not None and abs(float(cpu.timestamp) - app.usage.time) < 0.001
    assert samples[("container_memory_working_set_bytes", labels)].value == 7 * 4096
    start = samples[("container_start_time_seconds", labels)].value
    assert start == 1767323045.0
    pod_labels = (("namespace", "team"), ("pod", "web"))
    assert samples[("pod_cpu_usage_seconds_total", pod_labels)].value == 3.0
    assert samples[("pod_memory_working_set_bytes", pod_labels)].value == 8 * 4096
    assert samples[("node_cpu_usage_seconds_total", ())].value == 30.0
    assert samples[("node_memory_working_set_bytes", ())].value == GiB
    assert samples[("scrape_error", ())].value == 0
    assert "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time" in text


def test_sampler_flags_a_running_container_without_cgroup(tmp_path: Path) -> None:
    sampler_tree(tmp_path, 5)
    sampler = ResourceSampler("/kubetrio", root=tmp_path, proc=tmp_path / "proc")
    worker: Any = FakeWorker("u1", "web", {"app": "2026-01-02T03:04:05Z", "gone": ""})
    snapshot = sampler.sample([worker])
    assert [c.name for c in snapshot.pods[0].containers] == ["app"]
    assert snapshot.error
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(resource_metrics(snapshot).decode())
        for s in family.samples
    }
    assert samples["scrape_error"] == 1 and samples["resource_scrape_error"] == 1


def test_no_cgroup_parent_reports_the_node_only(tmp_path: Path) -> None:
    sampler_tree(tmp_path, 5)
    sampler = ResourceSampler(None, root=tmp_path, proc=tmp_path / "proc")
    worker: Any = FakeWorker("u1", "web", {"app": "2026-01-02T03:04:05Z"})
    snapshot = sampler.sample([worker])
    assert snapshot.node is not None and snapshot.pods == ()
