"""BGP mode: bird2 per node, a full mesh configured from Node and IPAMBlock objects.

Topology (root; see :mod:`.nodes`)::

    underlay bridge ── node 1  172.31.252.1  block 10.244.253.0/28   pod1
                    ── node 2  172.31.252.2  block 10.244.253.16/28  (+ .48/28 claimed later)
                    ── node 3  172.31.252.3  block 10.244.253.32/28  pod3 (httpd)

Each node runs :class:`BgpRoutes` with bird in its namespace; routes come only from
bird (nothing else programs the node's table), so pods reaching each other across
nodes is BGP at work.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
from kubetrio_cni_calico.bgp import PREFIX, BgpRoutes, BirdFailed, runtime_dir
from kubetrio_cni_calico.bird import peer_protocol, render_config
from kubetrio_cni_calico.blocks import API_VERSION, KIND, PLURAL, block_name
from kubetrio_cni_calico.peers import UNDERLAY_IP

from kubetrio.client import Client

from .conftest import ping
from .nodes import NodeLab, calico_api, node_lab, routes, wget

TAG = secrets.token_hex(2)
NODES = {  # node → (underlay address, block)
    f"bgp-{TAG}-1": ("172.31.252.1", "10.244.253.0/28"),
    f"bgp-{TAG}-2": ("172.31.252.2", "10.244.253.16/28"),
    f"bgp-{TAG}-3": ("172.31.252.3", "10.244.253.32/28"),
}
N1, N2, N3 = NODES
LATER_BLOCK = "10.244.253.48/28"


def test_render_is_deterministic_with_peers_and_exports(tmp_path: Path) -> None:
    peers = {"b": "172.31.0.3", "a": "172.31.0.2", "self": "172.31.0.1", "c": "172.31.0.2"}
    blocks = ["10.244.0.64/26", "10.244.0.0/26"]
    config = render_config(router_id="172.31.0.1", blocks=blocks, peers=peers, asn=64600)
    reordered = dict(reversed(list(peers.items())))
    assert (
        render_config(router_id="172.31.0.1", blocks=blocks[::-1], peers=reordered, asn=64600)
        == config
    )
    assert "router id 172.31.0.1;" in config
    assert "local 172.31.0.1 as 64600;" in config
    # One session per other address (a duplicate address once, ourselves never), sorted.
    assert config.count("protocol bgp ") == 2
    assert config.index("neighbor 172.31.0.2 as 64600;") < config.index("neighbor 172.31.0.3")
    assert f"protocol bgp {peer_protocol('172.31.0.2')} from mesh" in config
    assert "neighbor 172.31.0.1 " not in config
    assert 'description "node a"' in config and "node c" not in config
    # The blocks as blackholes, announced alone; learned routes into the kernel.
    assert config.index("route 10.244.0.0/26 blackhole;") < config.index("10.244.0.64/26")
    assert 'export where proto = "blocks"' in config
    assert "export where source ~ [ RTS_BGP, RTS_STATIC ]" in config
    if shutil.which("bird") is None:
        pytest.skip("bird is not installed")
    for rendered in (config, render_config(router_id="10.0.0.1", blocks=[], peers={})):
        path = tmp_path / "bird.conf"
        path.write_text(rendered)
        subprocess.run(["bird", "-p", "-c", str(path)], check=True)  # bird parses it


def test_runtime_dir_keeps_the_socket_path_short() -> None:
    assert runtime_dir("node-1") == Path("/run/kubetrio/bird/node-1")
    long = runtime_dir("n" * 253)
    assert len(str(long / "bird.ctl")) < 100


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    if os.geteuid() != 0 or shutil.which("bird") is None or shutil.which("busybox") is None:
        pytest.skip("needs root (network namespaces), bird and busybox")
    async with calico_api(tmp_path) as api:
        yield api


@pytest.fixture
def lab() -> Iterator[NodeLab]:
    with node_lab() as made:
        for name, (address, _) in NODES.items():
            made.add_node(name, address)
        yield made


@pytest.fixture
async def agents(client: Client, lab: NodeLab) -> AsyncIterator[dict[str, BgpRoutes]]:
    """A BgpRoutes per node (not started); removed afterwards, and no bird may be left."""
    made = {
        name: BgpRoutes(client, name, underlay_ip=None, netns=lab.netns[name]) for name in NODES
    }
    try:
        yield made
    finally:
        with trio.CancelScope(shield=True):
            for agent in made.values():
                await agent.remove()
    assert birds_running() == []


async def register_node(client: Client, name: str) -> None:
    await client.create(
        "v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    )
    addresses = [{"type": "InternalIP", "address": NODES[name][0]}]
    status = {"status": {"addresses": addresses}}
    await client.patch("v1", "nodes", name, status, subresource="status")


async def claim(client: Client, node: str, cidr: str) -> None:
    name = block_name(ipaddress.IPv4Network(cidr))
    spec = {"cidr": cidr, "node": node, "allocations": {}}
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}
    await client.create(API_VERSION, PLURAL, body)


def via(table: list[dict[str, Any]], dst: str) -> str | None:
    """Where bird's kernel route to ``dst`` goes: the gateway, ``blackhole``, or None."""
    for route in table:
        if route.get("dst") == dst and route.get("protocol") == "bird":
            if route.get("type") == "blackhole":
                return "blackhole"
            assert route.get("dev") == "eth0"  # straight to the peer over the underlay
            return str(route["gateway"])
    return None


async def routed(lab: NodeLab, node: str, expected: Mapping[str, str | None]) -> bool:
    """Whether bird's routes in ``node``'s table go where ``expected`` says (None: absent)."""
    table = await routes(lab.netns[node])
    return all(via(table, dst) == target for dst, target in expected.items())


async def wait_routes(lab: NodeLab, node: str, expected: Mapping[str, str | None]) -> None:
    """Until :func:`routed`."""
    while not await routed(lab, node, expected):
        await trio.sleep(0.1)


async def session(agent: BgpRoutes, peer: str) -> tuple[str, str]:
    """The agent's session to ``peer``: its state (``Established``, ``Active ...``) and
    since when, from bird's columns Name Proto Table State Since Info."""
    output = await agent.birdc("show", "protocols", peer_protocol(NODES[peer][0]))
    [line] = [row for row in output.splitlines() if row.startswith("mesh_")]
    _, _, _, _, since, *info = line.split()
    return " ".join(info), since


async def bird_routes(agent: BgpRoutes, dst: str, *, via: str) -> bool:
    """Whether the agent's bird has a route to ``dst`` via ``via`` in its own table."""
    try:
        return f"via {via} on eth0" in await agent.birdc("show", "route", dst)
    except BirdFailed:  # "Network not found"
        return False


def birds_running(*names: str) -> list[str]:
    """Pids of any bird whose command line names the socket of one of these nodes."""
    found = []
    for name in names or NODES:
        socket = str(runtime_dir(name) / "bird.ctl")
        result = subprocess.run(["pgrep", "-f", socket], capture_output=True, text=True)
        found += result.stdout.split()
    return found


@pytest.mark.root
async def test_mesh_routes_pods_across_nodes(
    client: Client, lab: NodeLab, agents: dict[str, BgpRoutes], tmp_path: Path
) -> None:
    blocks = {name: block for name, (_, block) in NODES.items()}
    everywhere = {  # node → where its table sends each block
        name: {blocks[other]: "blackhole" if other == name else NODES[other][0] for other in NODES}
        for name in NODES
    }
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for name in NODES:
                await claim(client, name, blocks[name])
            for name in (N1, N2):
                await register_node(client, name)
            async with trio.open_nursery() as node1:  # node 1's agent, to restart it
                await node1.start(agents[N1].run)
                await nursery.start(agents[N2].run)
                # Node 3 has no router id until its Node is registered: it waits for it.
                nursery.start_soon(agents[N3].run)
                await register_node(client, N3)
                for name in NODES:
                    await wait_routes(lab, name, everywhere[name])
                node3 = await client.get("v1", "nodes", N3)  # where peers reach it
                assert node3["metadata"]["annotations"][PREFIX + UNDERLAY_IP] == NODES[N3][0]

                pod1 = await lab.add_pod("pod1", N1, blocks[N1])
                pod3 = await lab.add_pod("pod3", N3, blocks[N3])
                assert ipaddress.IPv4Address(pod3.ip) in ipaddress.IPv4Network(blocks[N3])
                (tmp_path / "index.html").write_text("pod3")
                lab.serve(pod3, tmp_path)
                assert await ping(pod1.netns, pod3.ip)  # pod → pod across nodes, and back
                while (body := await wget(pod1.netns, pod3.ip)) == "!error":  # httpd starting
                    await trio.sleep(0.1)
                assert body == "pod3"
                assert await ping(lab.netns[N1], pod3.ip)  # node → pod on another node
                assert await ping(pod1.netns, lab.nodes[N3])  # pod → another node

                # A change that leaves the file as it is does not reload bird.
                reloads, syncs = agents[N1].reloads, agents[N1].syncs
                await client.patch("v1", "nodes", N2, {"metadata": {"labels": {"x": "y"}}})
                while agents[N1].syncs == syncs:
                    await trio.sleep(0.05)
                assert agents[N1].reloads == reloads

                # A block claimed later is announced; the reload keeps the sessions up.
                state = await session(agents[N2], N1)
                assert state[0] == "Established"
                reloads = agents[N2].reloads
                await claim(client, N2, LATER_BLOCK)
                await wait_routes(lab, N1, {LATER_BLOCK: NODES[N2][0]})
                await wait_routes(lab, N3, {LATER_BLOCK: NODES[N2][0]})
                await wait_routes(lab, N2, {LATER_BLOCK: "blackhole"})
                assert agents[N2].reloads == reloads + 1
                assert await session(agents[N2], N1) == state

                # A bird that dies is started again and learns the routes anew.
                process = agents[N2]._process
                assert process is not None
                process.kill()
                while agents[N2].applied is None or agents[N2]._process is process:
                    await trio.sleep(0.05)
                while not await bird_routes(agents[N2], blocks[N1], via=NODES[N1][0]):
                    await trio.sleep(0.1)
                node1.cancel_scope.cancel()

            # Node 1's agent restarts: its bird stopped for a graceful restart, so its
            # routes stay here and at the peers, and pods keep talking meanwhile.
            assert birds_running(N1) == []
            assert (await session(agents[N3], N1))[0] != "Established"
            assert await ping(pod1.netns, pod3.ip)
            assert await routed(lab, N1, everywhere[N1])
            assert await routed(lab, N3, everywhere[N3])
            agents[N1] = BgpRoutes(client, N1, underlay_ip=None, netns=lab.netns[N1])
            await nursery.start(agents[N1].run)
            while (await session(agents[N3], N1))[0] != "Established":
                await trio.sleep(0.1)

            # A node that leaves takes its block's routes with it on the other nodes.
            await client.delete("v1", "nodes", N3)
            await wait_routes(lab, N1, {blocks[N3]: None, blocks[N2]: NODES[N2][0]})
            await wait_routes(lab, N2, {blocks[N3]: None, blocks[N1]: NODES[N1][0]})
            nursery.cancel_scope.cancel()

    # All stopped: no bird runs, the routes stay until remove() takes them away.
    assert birds_running() == []
    assert via(await routes(lab.netns[N1]), blocks[N2]) == NODES[N2][0]
    for agent in agents.values():
        await agent.remove()
    for name in NODES:
        assert [r for r in await routes(lab.netns[name]) if r.get("protocol") == "bird"] == []
        assert not runtime_dir(name).exists()


@pytest.mark.root
async def test_a_bird_left_behind_is_stopped(client: Client, lab: NodeLab) -> None:
    """An agent that was killed leaves its bird running; the next one stops it first."""
    address = NODES[N1][0]
    agent = BgpRoutes(client, N1, underlay_ip=address, netns=lab.netns[N1])
    agent.dir.mkdir(parents=True, exist_ok=True)
    agent.config_path.write_text(render_config(router_id=address, blocks=[], peers={}))
    bird = ["bird", "-f", "-c", str(agent.config_path), "-s", str(agent.socket)]
    left = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns[N1], *bird, "-P", str(agent.pid_file)],
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(30):
            while not agent.pid_file.exists():
                await trio.sleep(0.05)
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.run)
                assert left.poll() is not None  # stopped before ours started
                assert birds_running(N1) == [str(int(agent.pid_file.read_text()))]
                nursery.cancel_scope.cancel()
    finally:
        left.kill()
        left.wait()
        with trio.CancelScope(shield=True):
            await agent.remove()
    assert not agent.dir.exists()


@pytest.mark.root
async def test_a_bird_that_cannot_start_is_reported(client: Client) -> None:
    agent = BgpRoutes(client, N2, underlay_ip=NODES[N2][0], netns=f"ktb-missing-{TAG}")
    why = pytest.RaisesExc(BirdFailed, match="Cannot open network namespace")
    try:
        with trio.fail_after(30), pytest.RaisesGroup(why, flatten_subgroups=True):
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.run)
    finally:
        await agent.remove()
    assert not agent.dir.exists()
