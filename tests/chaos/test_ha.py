"""The HA chaos scenarios on one ``kubetrio up --servers 3`` cluster (three etcd members,
three servers, the balancer): the leader server killed under load, a server behind the
API address killed with 100 watches open, etcd's leader member killed and returned, the
leader server and its member cut off by nftables for 30 s and healed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.chaos import kit
from tests.chaos.ha import HACluster, etcd_member_kill, leader_kill, partition, server_moved
from tests.chaos.kit import report

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HACluster]:
    ha = HACluster(tmp_path_factory.mktemp("ha"))
    try:
        ha.up()
        yield ha
    finally:
        print(ha.down())
        assert ha.processes() == [], "kubetrio down left processes running"


@pytest.fixture(autouse=True)
def namespace(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each scenario its own namespace: the load's names repeat from one run to the next."""
    monkeypatch.setattr(kit, "NAMESPACE", f"chaos-{request.node.name[5:30].replace('_', '-')}")


def _no_write_lost(figures: dict[str, object]) -> None:
    assert figures["lost_creates"] == []
    assert figures["non_linearizable_keys"] == []
    assert figures["acked_writes"] > figures["acked_before_kill"] > 0  # type: ignore[operator]


async def test_leader_server_killed_under_load(cluster: HACluster) -> None:
    figures = report("ha_leader_kill", **await leader_kill(cluster))
    # Writes through the API address go on (the other servers answer), nothing
    # acknowledged is lost, and another server's controllers and scheduler take the Leases.
    _no_write_lost(figures)
    assert figures["new_leader"] != figures["killed"]
    cluster.up()  # the killed server starts again and joins as a standby


async def test_api_address_moves_with_100_watches(cluster: HACluster) -> None:
    figures = report("ha_server_moved", **await server_moved(cluster))
    _no_write_lost(figures)
    # The watches on the killed server broke and resumed on another through the same
    # address: each saw every acknowledged write once, in order.
    assert figures["watch_reconnects"] > 0
    assert figures["watchers_expired"] == 0
    assert figures["watchers_behind"] == 0
    assert figures["watch_duplicate_events"] == 0
    assert figures["watch_missing_events"] == 0
    assert figures["watch_unexplained_events"] == 0
    assert figures["watch_out_of_order"] == 0
    assert figures["watchers_agree"] and figures["watch_events_per_watcher"] > 0
    cluster.up()


async def test_etcd_member_killed_and_returned(cluster: HACluster) -> None:
    figures = report("ha_etcd_member_kill", **await etcd_member_kill(cluster))
    # Two of three members keep the quorum: writes go on, none acknowledged is lost,
    # and the member started again caught up with the others.
    _no_write_lost(figures)
    assert "member_rejoin_s" in figures


@pytest.mark.node  # nftables and a cgroup: run beside no other node test (the flock)
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nftables"
)
async def test_leader_partitioned_for_30s_and_healed(cluster: HACluster) -> None:
    figures = report("ha_partition", **await partition(cluster))
    assert figures["leftovers"] == [], "the nft table or the cgroup outlived the scenario"
    # Writes through the API address go on (the balancer stops choosing the server it
    # cannot reach), nothing acknowledged is lost, and another server takes the Leases.
    _no_write_lost(figures)
    assert figures["new_leader"] != figures["partitioned"]
    # The cut-off leader stepped down once its renew deadline passed (from then on its
    # controllers' guarded client refuses every write) ...
    assert "kube-controller-manager" in figures["held"]
    assert figures["stepped_down"] == figures["held"]
    # ... and after the heal it is ready and serves the write made while it was cut off.
    assert "recover_s" in figures
