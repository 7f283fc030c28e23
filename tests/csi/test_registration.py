"""The csi plugin in a cluster: its options, its name check, and registration — a node agent
started with ``--csi-driver`` records the driver in its CSINode and Node annotation, and the
driver's CSIDriver object appears, all read back with kubectl."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
import yaml
from kubetrio_csi.plugin import csidriver_object, parse_drivers

from kubetrio import plugins
from kubetrio.apiserver import merge_kubeconfig
from kubetrio.client import Client, ClientError
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.kubelet import NodeAgent
from kubetrio.kubelet._csinode import register_storage_drivers
from kubetrio.store import open_store
from tests.csi.dirdriver import NAME, NODE_ID, ZONE_KEY, DirDriver
from tests.kit import wait_for

KUBECTL = Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent / "kubectl.1.33"
TOKEN = "csi-admin-token"
NODE = "csi-node"
BUILT_IN = ("kubetrio.io/local", "rancher.io/local-path")
"""The storage plugin's own drivers, registered beside the gRPC one."""
HOSTNAME = "kubernetes.io/hostname"


def test_parse_drivers() -> None:
    assert parse_drivers("a.csi=/run/a.sock, b.csi=unix:///run/b.sock") == {
        "a.csi": "/run/a.sock",
        "b.csi": "unix:///run/b.sock",
    }
    assert parse_drivers(["a.csi=/run/a.sock"]) == {"a.csi": "/run/a.sock"}
    assert parse_drivers(None) == {}
    with pytest.raises(ValueError, match=r"--csi-driver 'a.csi': expected NAME=/path/to/csi.sock"):
        parse_drivers("a.csi")
    with pytest.raises(ValueError, match="the socket must be an absolute path"):
        parse_drivers("a.csi=run/a.sock")
    with pytest.raises(ValueError, match=r"driver 'a\.csi' is given twice"):
        parse_drivers("a.csi=/a.sock,a.csi=/b.sock")


def test_options_and_configuration(driver: DirDriver, sockets: Path) -> None:
    manager = plugins.load(only=["csi"])
    declared = {o.name: o for o in manager.options()}
    assert (declared["csi-driver"].section, declared["csi-driver"].key) == ("csi", "drivers")
    assert declared["csi-timeout"].type is float
    manager.configure(
        config={"csi": {"drivers": f"{NAME}={driver.socket},late.csi={sockets}/late.sock"}}
    )
    try:
        assert manager.broken == {}
        assert [r.provider.name for r in manager.storage_drivers()] == [NAME, "late.csi"]
        assert [r.provider.name for r in manager.controllers()] == ["csi-driver-objects"]
        assert driver.requests("GetPluginInfo")  # the listening one was asked its name
    finally:
        manager.unconfigure()


def test_a_misnamed_driver_breaks_the_plugin_at_configure(driver: DirDriver) -> None:
    manager = plugins.load(only=["csi"])
    manager.configure(config={"csi": {"drivers": f"wrong.csi={driver.socket}"}})
    assert manager.broken == {
        "csi": "kubetrio_configure: StorageDriverError: FAILED_PRECONDITION: the CSI driver at "
        f"unix://{driver.socket} is named {NAME!r}, not 'wrong.csi': check --csi-driver "
        "wrong.csi=…"
    }
    assert manager.storage_drivers() == []


class FakeRuntime:
    """A container runtime that runs nothing: the agent's registration needs no containers."""

    name = "fake"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def list_sandboxes(self) -> list[str]:
        return []


@pytest.fixture
async def cluster(
    tmp_path: Path, driver: DirDriver
) -> AsyncIterator[tuple[Cluster, plugins.PluginManager]]:
    manager = plugins.load(only=["auth", "storage", "csi"])
    config = {"csi": {"drivers": f"{NAME}={driver.socket}"}, "storage": {"root": str(tmp_path)}}
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_cluster(
            store, plugins=manager, token=TOKEN, plugin_config=config, scheduler=False
        ) as running,
    ):
        assert manager.broken == {}
        yield running, manager


async def kubectl(kubeconfig: Path, *args: str) -> str:
    with trio.fail_after(30):
        result = await trio.run_process(
            [str(KUBECTL), f"--kubeconfig={kubeconfig}", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl.1.33 not installed")
async def test_node_agent_registers_csi_drivers(
    cluster: tuple[Cluster, plugins.PluginManager], driver: DirDriver, tmp_path: Path
) -> None:
    running, manager = cluster
    kubeconfig = tmp_path / "kubeconfig"
    merge_kubeconfig(kubeconfig, name="csi", server=running.url, token=TOKEN)
    agent = NodeAgent(
        running.client,
        node_name=NODE,
        plugins=manager,
        runtime=FakeRuntime(),  # type: ignore[arg-type]
        network=None,
        root_dir=tmp_path / "agent",
        address="127.0.0.1",
    )

    async def registered() -> dict[str, Any] | None:
        try:
            csinode = await running.client.get("storage.k8s.io/v1", "csinodes", NODE)
        except ClientError as exc:
            if exc.not_found:
                return None
            raise
        drivers = csinode["spec"].get("drivers") or []
        return csinode if {d["name"] for d in drivers} == {NAME, *BUILT_IN} else None

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await wait_for(registered, timeout=30)
            nursery.cancel_scope.cancel()

    csinode = yaml.safe_load(await kubectl(kubeconfig, "get", "csinodes", NODE, "-o", "yaml"))
    node = await running.client.get("v1", "nodes", NODE)
    assert csinode["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": node["metadata"]["uid"]}
    ]
    assert sorted(csinode["spec"]["drivers"], key=lambda d: str(d["name"])) == [
        {
            "name": NAME,
            "nodeID": NODE_ID,
            "topologyKeys": [ZONE_KEY],
            "allocatable": {"count": 7},
        },
        {"name": "kubetrio.io/local", "nodeID": NODE, "topologyKeys": []},
        {"name": "rancher.io/local-path", "nodeID": NODE, "topologyKeys": [HOSTNAME]},
    ]
    assert len(driver.requests("NodeGetInfo")) == 1

    annotation = node["metadata"]["annotations"]["csi.volume.kubernetes.io/nodeid"]
    assert json.loads(annotation) == {NAME: NODE_ID, **dict.fromkeys(BUILT_IN, NODE)}
    assert node["metadata"]["labels"][ZONE_KEY] == "zone-a"  # the driver's topology

    table = await kubectl(kubeconfig, "get", "csinodes")
    assert table.split("\n")[0].split() == ["NAME", "DRIVERS", "AGE"]
    assert table.split("\n")[1].split()[:2] == [NODE, "3"]

    async def csidriver() -> str:
        out = await kubectl(kubeconfig, "get", "csidrivers", "--ignore-not-found")
        return out if NAME in out else ""

    table = await wait_for(csidriver, timeout=30)
    header, row = table.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "ATTACHREQUIRED",
        "PODINFOONMOUNT",
        "STORAGECAPACITY",
        "TOKENREQUESTS",
        "REQUIRESREPUBLISH",
        "MODES",
        "AGE",
    ]
    assert row.split()[:7] == [NAME, "false", "false", "false", "<unset>", "false", "Persistent"]
    stored = await running.client.get("storage.k8s.io/v1", "csidrivers", NAME)
    assert stored["spec"]["volumeLifecycleModes"] == ["Persistent"]
    assert csidriver_object(NAME)["metadata"]["labels"] == stored["metadata"]["labels"]


async def test_an_existing_csidriver_is_left_alone(
    tmp_path: Path, driver: DirDriver, sockets: Path
) -> None:
    """The controller creates only what is missing: an administrator's object stays."""
    mine = csidriver_object(NAME)
    mine["spec"]["podInfoOnMount"] = True
    mine["metadata"]["labels"] = {"owner": "admin"}
    manager = plugins.load(only=["csi"])
    drivers = f"{NAME}={driver.socket},late.csi={sockets}/late.sock"
    with trio.fail_after(60):
        async with open_store(f"sqlite://{tmp_path}/s.db") as store:
            async with open_cluster(store, scheduler=False) as before:  # no csi plugin yet
                await before.client.create("storage.k8s.io/v1", "csidrivers", mine)
            async with open_cluster(
                store, plugins=manager, plugin_config={"csi": {"drivers": drivers}}, scheduler=False
            ) as running:
                client: Client = running.client

                async def made() -> bool:
                    # the controller goes through the drivers in order: NAME came first
                    try:
                        await client.get("storage.k8s.io/v1", "csidrivers", "late.csi")
                    except ClientError as exc:
                        if exc.not_found:
                            return False
                        raise
                    return True

                await wait_for(made, timeout=30)
                stored = await client.get("storage.k8s.io/v1", "csidrivers", NAME)
    assert stored["spec"]["podInfoOnMount"] is True
    assert stored["metadata"]["labels"] == {"owner": "admin"}


async def test_a_driver_that_comes_up_later_is_registered_then(
    cluster: tuple[Cluster, plugins.PluginManager], driver: DirDriver, tmp_path: Path
) -> None:
    """As node-driver-registrar waits for its driver's socket: the agent keeps asking."""
    running, manager = cluster
    driver.stop()
    agent = NodeAgent(
        running.client,
        node_name=NODE,
        plugins=manager,
        runtime=FakeRuntime(),  # type: ignore[arg-type]
        network=None,
        root_dir=tmp_path / "agent",
        address="127.0.0.1",
    )

    def names_are(*expected: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            try:
                csinode = await running.client.get("storage.k8s.io/v1", "csinodes", NODE)
            except ClientError as exc:
                if exc.not_found:
                    return False
                raise
            return sorted(d["name"] for d in csinode["spec"]["drivers"]) == sorted(expected)

        return check

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await wait_for(names_are(*BUILT_IN), timeout=30)
            driver.start()
            await wait_for(names_are(*BUILT_IN, NAME), timeout=60)
            nursery.cancel_scope.cancel()
    node = await running.client.get("v1", "nodes", NODE)
    annotation = json.loads(node["metadata"]["annotations"]["csi.volume.kubernetes.io/nodeid"])
    assert annotation == {NAME: NODE_ID, **dict.fromkeys(BUILT_IN, NODE)}


@pytest.mark.parametrize("command", ["server", "agent", "up"])
def test_commands_take_the_options(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kubetrio.cli import build_app

    monkeypatch.setenv("COLUMNS", "200")  # rich wraps help text at the terminal's width
    monkeypatch.delenv(plugins.ONLY_ENV, raising=False)
    shown = CliRunner().invoke(build_app(), [command, "--help"])
    assert shown.exit_code == 0, shown.output
    assert "Options of plugin csi" in shown.output
    assert "--csi-driver" in shown.output and "--csi-timeout" in shown.output
    refused = CliRunner().invoke(build_app(), [command, "--csi-timeout", "soon"])
    assert refused.exit_code == 2
    assert "Invalid value for '--csi-timeout'" in refused.output


async def test_a_driver_without_node_service_is_skipped(
    cluster: tuple[Cluster, plugins.PluginManager], driver: DirDriver
) -> None:
    """NodeGetInfo answering UNIMPLEMENTED (a controller-only driver): registration ends,
    with the other drivers registered and no retry of that one."""
    running, manager = cluster
    driver.failures["NodeGetInfo"] = (grpc.StatusCode.UNIMPLEMENTED, "no node service here")
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
    created = await running.client.create("v1", "nodes", node)
    drivers = {r.provider.name: r.provider for r in manager.storage_drivers()}
    with trio.fail_after(30):  # returns once every driver is registered or skipped
        await register_storage_drivers(running.client, NODE, created["metadata"]["uid"], drivers)
    csinode = await running.client.get("storage.k8s.io/v1", "csinodes", NODE)
    assert sorted(d["name"] for d in csinode["spec"]["drivers"]) == sorted(BUILT_IN)
    assert len(driver.requests("NodeGetInfo")) == 1
