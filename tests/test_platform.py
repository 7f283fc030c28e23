"""Plugins as a platform: per-cluster plugin state, one plugin manager for every
component, broken plugins skipped, checked scheduler stages, options and config files."""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
import trio
from typer.testing import CliRunner

from kubetrio import plugins
from kubetrio.client import Client, ClientError
from kubetrio.cluster import open_cluster
from kubetrio.plugins import PluginError, PluginManager, hookimpl
from kubetrio.providers import (
    ApiCaches,
    AuthorizationAttributes,
    AuthorizationDecision,
    CycleState,
    NodeInfo,
    ObjectCache,
    PodInfo,
    SchedulerPlugin,
    UserInfo,
)
from kubetrio.store import open_store

runner = CliRunner()


# --- per-cluster plugin state -----------------------------------------------------------------


async def test_two_embedded_clusters_keep_their_own_plugin_settings(tmp_path: Path) -> None:
    """Two clusters in one process with different auth tokens and storage roots: each
    accepts only its own token and provisions under its own root; both unconfigure."""
    managers = [plugins.load(only=["auth", "storage"]) for _ in range(2)]
    roots = [tmp_path / "volumes-a", tmp_path / "volumes-b"]
    tokens = ["token-a", "token-b"]
    with trio.fail_after(60):
        async with (
            open_store(f"sqlite://{tmp_path}/a.db") as store_a,
            open_store(f"sqlite://{tmp_path}/b.db") as store_b,
            open_cluster(
                store_a,
                plugins=managers[0],
                token=tokens[0],
                plugin_config={"storage": {"root": str(roots[0])}},
                scheduler=False,
            ) as cluster_a,
            open_cluster(
                store_b,
                plugins=managers[1],
                token=tokens[1],
                plugin_config={"storage": {"root": str(roots[1])}},
                scheduler=False,
            ) as cluster_b,
        ):
            for cluster, mine, other in (
                (cluster_a, tokens[0], tokens[1]),
                (cluster_b, tokens[1], tokens[0]),
            ):
                listed = await Client.in_process(cluster.api, token=mine).list("v1", "namespaces")
                assert listed["kind"] == "NamespaceList"
                with pytest.raises(ClientError) as refused:
                    await Client.in_process(cluster.api, token=other).list("v1", "namespaces")
                assert refused.value.code == 401
            for manager, root in zip(managers, roots, strict=True):
                drivers = manager.storage_drivers()
                assert len(drivers) == 2  # kubetrio.io/local and rancher.io/local-path
                for driver in drivers:
                    assert driver.provider.root == root  # type: ignore[attr-defined]
    assert not any(manager.configured for manager in managers)  # unconfigured on stop


class Recording(PluginManager):
    """A plugin manager that records which component asked it for what."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def resources(self) -> Any:
        self.asked.add("resources")  # the API server
        return super().resources()

    def controllers(self) -> Any:
        self.asked.add("controllers")  # the controller manager
        return super().controllers()

    def scheduler_plugins(self) -> Any:
        self.asked.add("scheduler_plugins")  # the scheduler
        return super().scheduler_plugins()


async def test_open_cluster_gives_every_component_the_same_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = Recording()
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_cluster(store, plugins=manager),
    ):
        assert manager.configured
    assert manager.asked == {"resources", "controllers", "scheduler_plugins"}
    assert not manager.configured

    # plugins=None is no plugins for every component: none loads the installed ones.
    def no_loading(**kwargs: Any) -> PluginManager:
        raise AssertionError("a component loaded the installed plugins itself")

    monkeypatch.setattr(plugins, "load", no_loading)
    async with (
        open_store(f"sqlite://{tmp_path}/t.db") as store,
        open_cluster(store, plugins=None),
    ):
        pass


# --- caches for request-path plugins -----------------------------------------------------------


class DenyUnlessConfigMapSays:
    """An authorizer reading its policy from API objects, as RBAC does: a request is
    allowed only when the ConfigMap ``policy/allow`` lists the user (read from a cache)."""

    def __init__(self) -> None:
        self.configmaps: ObjectCache | None = None
        self.synced_when_asked: list[bool] = []

    @hookimpl
    def kubetrio_api_caches(self, caches: ApiCaches) -> None:
        self.configmaps = caches.informer("v1", "configmaps")

    @hookimpl
    def kubetrio_authorize(
        self, user: UserInfo, attributes: AuthorizationAttributes
    ) -> AuthorizationDecision | None:
        assert self.configmaps is not None
        self.synced_when_asked.append(self.configmaps.synced.is_set())
        policy = self.configmaps.get("allow", "policy") or {}
        allowed = user.name in (policy.get("data") or {}).get("users", "").split(",")
        return AuthorizationDecision(allowed=allowed, reason="" if allowed else "not listed")


async def test_api_caches_are_filled_by_the_loopback_client_before_requests(
    tmp_path: Path,
) -> None:
    """A plugin's caches are synced before the server serves a request, the loopback
    client that fills them passes an authorizer denying everyone else, and what is
    written later reaches the cache (so the policy takes effect)."""
    manager = plugins.load(only=["auth"])
    policy = DenyUnlessConfigMapSays()
    manager.register(policy, name="policy")
    with trio.fail_after(60):
        async with (
            open_store(f"sqlite://{tmp_path}/s.db") as store,
            open_cluster(
                store, plugins=manager, token="t", controllers=False, scheduler=False
            ) as cluster,
        ):
            user = Client.in_process(cluster.api, token="t")
            with pytest.raises(ClientError) as denied:
                await user.list("v1", "pods", namespace="default")
            assert denied.value.code == 403
            assert policy.synced_when_asked and all(policy.synced_when_asked)

            loopback = Client.in_process(cluster.api, loopback=True)
            await loopback.create("v1", "namespaces", {"metadata": {"name": "policy"}})
            await loopback.create(
                "v1",
                "configmaps",
                {"metadata": {"name": "allow"}, "data": {"users": "admin"}},
                namespace="policy",
            )
            assert policy.configmaps is not None
            with trio.fail_after(10):
                while policy.configmaps.get("allow", "policy") is None:
                    await trio.sleep(0.02)
            listed = await user.list("v1", "pods", namespace="default")
            assert listed["kind"] == "PodList"


# --- broken plugins ---------------------------------------------------------------------------


@pytest.fixture
def broken_entry_point(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The installed plugins plus one whose import fails."""
    monkeypatch.delenv(plugins.ONLY_ENV, raising=False)
    monkeypatch.delenv(plugins.BLOCK_ENV, raising=False)
    real = plugins.entry_points  # type: ignore[attr-defined]

    def with_broken(**kwargs: Any) -> list[EntryPoint]:
        bad = EntryPoint(name="broken", value="kubetrio_no_such_plugin", group="kubetrio")
        return [*real(**kwargs), bad]

    monkeypatch.setattr(plugins, "entry_points", with_broken)
    yield


def test_a_plugin_failing_to_import_is_reported_and_skipped(broken_entry_point: None) -> None:
    manager = plugins.load()
    assert "No module named 'kubetrio_no_such_plugin'" in manager.broken["broken"]
    infos = {info.name: info for info in manager.plugins()}
    assert infos["broken"].error and not infos["broken"].hooks
    assert not infos["scheduler"].error and infos["scheduler"].hooks  # the others run


def test_the_cli_works_beside_a_broken_plugin(broken_entry_point: None) -> None:
    from kubetrio.cli import build_app

    assert runner.invoke(build_app(), ["--help"]).exit_code == 0
    assert runner.invoke(build_app(), ["version"]).exit_code == 0
    listed = runner.invoke(build_app(), ["plugins", "--json"])
    assert listed.exit_code == 0, listed.output
    by_name = {p["name"]: p for p in json.loads(listed.output)}
    assert "kubetrio_no_such_plugin" in by_name["broken"]["error"]
    blocked = runner.invoke(build_app(), ["plugins", "--json", "--block", "broken"])
    assert blocked.exit_code == 0, blocked.output
    assert "broken" not in {p["name"] for p in json.loads(blocked.output)}


def plugin_module(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def test_a_plugin_raising_in_configure_is_skipped_and_unconfigure_runs_once() -> None:
    calls: list[str] = []

    def fail(config: dict[str, Any]) -> None:
        raise RuntimeError("cannot read /nowhere")

    manager = PluginManager()
    manager.register(plugin_module("bad", kubetrio_configure=fail), name="bad")
    manager.register(
        plugin_module(
            "good",
            kubetrio_configure=lambda config: calls.append("configure"),
            kubetrio_unconfigure=lambda: calls.append("unconfigure"),
        ),
        name="good",
    )
    manager.configure(config={})
    assert manager.broken == {"bad": "kubetrio_configure: RuntimeError: cannot read /nowhere"}
    assert [info.name for info in manager.plugins() if not info.error] == ["good"]
    manager.unconfigure()
    manager.unconfigure()
    assert calls == ["configure", "unconfigure"]


def test_an_option_clashing_with_a_built_in_breaks_only_its_plugin() -> None:
    def clash(options: Any) -> None:
        options.add("port", help="mine")

    manager = PluginManager()
    manager.register(plugin_module("clash", kubetrio_add_options=clash), name="clash")
    assert manager.options(reserved={"port"}) == []
    assert "option --port is declared by kubetrio itself" in manager.broken["clash"]


# --- scheduler stages -------------------------------------------------------------------------


def scheduler_plugin_manager(provider: object) -> PluginManager:
    def register(register: Callable[[SchedulerPlugin], None]) -> None:
        register(provider)  # type: ignore[arg-type]

    manager = PluginManager()
    manager.register(
        plugin_module("third", kubetrio_register_scheduler_plugins=register), name="third"
    )
    return manager


class WrongFilter:
    name = "WrongFilter"

    def filter(self, pod: Any) -> None:
        return None


class SyncBind:
    name = "SyncBind"

    def bind(self, client: Any, pod: Any, node_name: str) -> bool:
        return False


class GoodStages:
    name = "GoodStages"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> None:
        return None

    def filter(self, pod: Any, node: NodeInfo, state: CycleState) -> None:
        return None

    def score(self, pod: Any, node: NodeInfo) -> float:
        return 50

    async def bind(self, client: Any, pod: Any, node_name: str) -> bool:
        return False


def test_scheduler_stage_signatures_are_checked_at_load_time() -> None:
    with pytest.raises(PluginError) as wrong:
        scheduler_plugin_manager(WrongFilter()).scheduler_plugins()
    message = str(wrong.value)
    assert "plugin 'third'" in message and "'WrongFilter'" in message
    assert "filter(pod: 'Any') -> 'None'" in message and "FilterPlugin" in message
    with pytest.raises(PluginError, match=r"'SyncBind': bind must be async \(BindPlugin\)"):
        scheduler_plugin_manager(SyncBind()).scheduler_plugins()
    [registered] = scheduler_plugin_manager(GoodStages()).scheduler_plugins()
    assert registered.plugin == "third"


class OffScale:
    name = "OffScale"
    node_local = True

    def score(self, pod: Any, node: NodeInfo) -> float:
        return 150


def test_a_score_out_of_range_is_an_error_naming_the_plugin() -> None:
    from kubetrio.scheduler import Framework, SchedulerCache, ScoreRangeError, pod_info

    framework = Framework([OffScale()])
    cache = SchedulerCache()
    for name in ("n1", "n2"):
        cache.set_node({"metadata": {"name": name}, "status": {}})
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {}}
    with pytest.raises(ScoreRangeError, match=r"score plugin 'OffScale' returned 150 .*\[0, 100\]"):
        framework.schedule(pod_info(pod), cache)


# --- options and the configuration file -------------------------------------------------------


def run_server_with(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> tuple[int, str, dict[str, Any]]:
    """`kubetrio server ARGS` with the server's body replaced by a recorder."""
    import kubetrio.cli._serve as serve
    from kubetrio.cli import build_app

    seen: dict[str, Any] = {}

    async def fake_run_server(**kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(serve, "run_server", fake_run_server)
    result = runner.invoke(build_app(), ["server", "--no-agent", *args])
    return result.exit_code, result.output, seen


def test_config_file_is_merged_with_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(plugins.ONLY_ENV, raising=False)
    (tmp_path / "config.yaml").write_text(
        "port: 7000\nhost: 127.0.0.2\nproxy-mode: maglev\nnetwork-mode: bgp\n"
        "network:\n  pod-cidr: 10.9.0.0/16\nauth:\n  token-auth-file: /etc/tokens.csv\n"
    )
    code, output, seen = run_server_with(
        monkeypatch, ["--data-dir", str(tmp_path), "--port", "7001", "--mode", "ipip"]
    )
    assert code == 0, output
    assert seen["port"] == 7001  # the flag wins
    assert seen["host"] == "127.0.0.2"  # the file beats the default
    assert seen["proxy_mode"] == "maglev"
    assert seen["plugin_config"] == {
        "network": {"mode": "ipip", "pool": "10.9.0.0/16"},
        "auth": {"token_auth_file": "/etc/tokens.csv"},
    }


def test_config_file_named_by_flag_and_its_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "elsewhere.yaml"
    config.write_text("simulated-nodes: 3\n")
    code, output, seen = run_server_with(
        monkeypatch, ["--data-dir", str(tmp_path / "d"), "--config", str(config)]
    )
    assert code == 0, output
    assert seen["simulated_nodes"] == 3
    for text, message in (
        ("simulated-nodes: many\n", "simulated-nodes: Invalid value for '--simulated-nodes'"),
        ("simulated_nodes: 1\n", "simulated_nodes: not an option of `kubetrio server`"),
        ("network:\n  mode: gre\n", "network.mode: Invalid value: 'gre' is not one of"),
    ):
        config.write_text(text)
        code, output, seen = run_server_with(monkeypatch, ["--config", str(config)])
        assert code == 2
        assert f"error: {config}: {message}" in output
        assert not seen


def test_agent_chooses_the_network_plugin_by_name(tmp_path: Path) -> None:
    from kubetrio.kubelet import NodeAgent

    class Net:
        def __init__(self, name: str) -> None:
            self.name = name

        async def add(self, **kwargs: Any) -> Any: ...

        async def delete(self, **kwargs: Any) -> None: ...

        async def run_node_services(self, client: Any, node_name: str, **kwargs: Any) -> None: ...

    class Runtime:
        name = "fake"

    def manager_with(*names: str) -> PluginManager:
        manager = PluginManager()
        for name in names:
            manager.register(
                plugin_module(
                    name,
                    kubetrio_register_network_plugins=lambda register, n=name: register(Net(n)),
                ),
                name=name,
            )
        return manager

    def agent(manager: PluginManager, network: str | None = "") -> NodeAgent:
        return NodeAgent(
            None,  # type: ignore[arg-type]
            node_name="n",
            plugins=manager,
            runtime=Runtime(),  # type: ignore[arg-type]
            network=network,
            root_dir=tmp_path,
            address="127.0.0.1",
        )

    assert agent(manager_with("weave")).network.name == "weave"
    assert agent(manager_with()).network is None
    assert agent(manager_with("weave", "flannel"), "flannel").network.name == "flannel"
    with pytest.raises(ValueError, match="network plugins flannel, weave are loaded: choose"):
        agent(manager_with("weave", "flannel"))
    with pytest.raises(ValueError, match="no network plugin named 'calico'"):
        agent(manager_with("weave"), "calico")
