"""The plugin manager: entry-point loading, limits, blocking, and the hook rules."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pytest
import trio

from kubetrio import plugins
from kubetrio.plugins import PluginError, PluginManager, hookimpl
from kubetrio.providers import (
    AdmissionRequest,
    AuthorizationAttributes,
    AuthRequest,
    NetworkPlugin,
    PodNetwork,
    UserInfo,
)

BUILT_INS = {"auth", "cni_calico", "scheduler", "storage"}


def plugin_module(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A plugin as a module object holding the given hook implementations."""
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def test_built_in_plugins_are_found_through_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(plugins.ONLY_ENV, raising=False)
    monkeypatch.delenv(plugins.BLOCK_ENV, raising=False)
    infos = {info.name: info for info in plugins.load().plugins()}
    assert set(infos) >= BUILT_INS
    assert infos["scheduler"].distribution == "kubetrio-scheduler"
    assert "kubetrio_register_scheduler_plugins" in infos["scheduler"].hooks
    assert "kubetrio_authenticate" in infos["auth"].hooks


def test_env_limits_which_plugins_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ONLY_ENV, "scheduler, auth")
    assert {info.name for info in plugins.load().plugins()} == {"scheduler", "auth"}


def test_block_list_keeps_plugins_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(plugins.ONLY_ENV, raising=False)
    monkeypatch.setenv(plugins.BLOCK_ENV, "storage")
    names = {info.name for info in plugins.load(block=["auth"]).plugins()}
    assert "storage" not in names and "auth" not in names
    assert "scheduler" in names


def test_unknown_hook_is_rejected() -> None:
    manager = PluginManager()
    manager.register(plugin_module("typo", kubetrio_authenticat=lambda request: None), name="typo")
    with pytest.raises(PluginError, match="typo"):
        manager.check()


def test_async_hook_implementation_is_rejected() -> None:
    async def kubetrio_authenticate(request: AuthRequest) -> None:
        return None

    with pytest.raises(PluginError, match="async"):
        PluginManager().register(
            plugin_module("bad", kubetrio_authenticate=kubetrio_authenticate), name="bad"
        )


def test_decision_hook_returning_awaitable_is_rejected() -> None:
    async def later() -> UserInfo:
        return UserInfo(name="x")

    manager = PluginManager()
    manager.register(
        plugin_module("sneaky", kubetrio_authenticate=lambda request: later()), name="sneaky"
    )
    with pytest.raises(PluginError, match="awaitable"):
        manager.authenticate(request=AuthRequest(headers={}))


def test_facade_calls_are_keyword_only() -> None:
    manager = PluginManager()
    with pytest.raises(TypeError):
        manager.authenticate(AuthRequest(headers={}))  # type: ignore[call-arg]


def test_firstresult_and_no_opinion_semantics() -> None:
    manager = PluginManager()
    manager.register(
        plugin_module("silent", kubetrio_authorize=lambda user, attributes: None), name="silent"
    )
    assert (
        manager.authorize(user=UserInfo(name="u"), attributes=AuthorizationAttributes(verb="get"))
        is None
    )

    def deny(user: UserInfo, attributes: AuthorizationAttributes) -> Any:
        from kubetrio.providers import AuthorizationDecision

        return AuthorizationDecision(allowed=False, reason="no")

    manager.register(plugin_module("denier", kubetrio_authorize=deny), name="denier")
    decision = manager.authorize(
        user=UserInfo(name="u"), attributes=AuthorizationAttributes(verb="get")
    )
    assert decision is not None and not decision.allowed


def test_admission_runs_mutations_then_collects_all_validations() -> None:
    def add_label(request: AdmissionRequest) -> None:
        assert request.object is not None
        request.object.setdefault("metadata", {}).setdefault("labels", {})["mutated"] = "yes"

    manager = PluginManager()
    manager.register(plugin_module("mutator", kubetrio_admission_mutate=add_label), name="mutator")
    manager.register(
        plugin_module("v1", kubetrio_admission_validate=lambda request: ["first problem"]),
        name="v1",
    )
    manager.register(
        plugin_module("v2", kubetrio_admission_validate=lambda request: ["second problem"]),
        name="v2",
    )
    manager.register(
        plugin_module("v3", kubetrio_admission_validate=lambda request: None), name="v3"
    )
    request = AdmissionRequest(
        operation="CREATE",
        user=UserInfo(name="u"),
        api_group="",
        api_version="v1",
        kind="Pod",
        resource="pods",
        object={"metadata": {"name": "p"}},
    )
    manager.admission_mutate(request=request)
    assert request.object == {"metadata": {"name": "p", "labels": {"mutated": "yes"}}}
    assert sorted(manager.admission_validate(request=request)) == [
        "first problem",
        "second problem",
    ]


class FakeNetwork:
    """A network provider whose methods really suspend, as a netlink call would."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def add(self, *, pod: dict[str, Any], netns_path: str, container_id: str) -> PodNetwork:
        await trio.sleep(0.01)
        self.calls.append(f"add {container_id}")
        return PodNetwork(ips=["10.0.0.5"])

    async def delete(self, *, pod: dict[str, Any], netns_path: str, container_id: str) -> None:
        await trio.sleep(0)
        self.calls.append(f"del {container_id}")

    async def run_node_services(
        self, client: Any, node_name: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep_forever()


async def test_async_work_flows_through_registered_providers() -> None:
    """The pattern every I/O hook follows: sync registration, async provider methods
    awaited by the core in its own nursery, cancelled by the core's scope."""
    provider = FakeNetwork()

    def register_network(register: Callable[[NetworkPlugin], None]) -> None:
        register(provider)

    manager = PluginManager()
    manager.register(
        plugin_module("net", kubetrio_register_network_plugins=register_network), name="net"
    )
    [registered] = manager.network_plugins()
    assert registered.plugin == "net" and registered.provider is provider

    async with trio.open_nursery() as nursery:
        await nursery.start(registered.provider.run_node_services, None, "node-1")
        results = []

        async def wire(i: int) -> None:
            results.append(
                await registered.provider.add(pod={}, netns_path="/x", container_id=f"c{i}")
            )

        async with trio.open_nursery() as adds:
            for i in range(3):
                adds.start_soon(wire, i)
        await registered.provider.delete(pod={}, netns_path="/x", container_id="c0")
        nursery.cancel_scope.cancel()
    assert sorted(provider.calls[:3]) == ["add c0", "add c1", "add c2"]
    assert provider.calls[3] == "del c0"
    assert [r.ips for r in results] == [["10.0.0.5"]] * 3


def test_provider_must_follow_protocol() -> None:
    manager = PluginManager()
    manager.register(
        plugin_module(
            "junk", kubetrio_register_network_plugins=lambda register: register(object())
        ),
        name="junk",
    )
    with pytest.raises(PluginError, match="NetworkPlugin protocol"):
        manager.network_plugins()


def test_duplicate_provider_names_are_rejected() -> None:
    manager = PluginManager()
    for plugin_name in ("a", "b"):
        manager.register(
            plugin_module(
                plugin_name,
                kubetrio_register_network_plugins=lambda register: register(FakeNetwork()),
            ),
            name=plugin_name,
        )
    with pytest.raises(PluginError, match="already registered by plugin"):
        manager.network_plugins()


def test_built_in_providers_register(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(plugins.ONLY_ENV, raising=False)
    monkeypatch.delenv(plugins.BLOCK_ENV, raising=False)
    manager = plugins.load()
    manager.configure(config={})
    assert {r.provider.name for r in manager.scheduler_plugins()} >= {
        "NodeName",
        "NodeUnschedulable",
    }
    assert [r.provider.name for r in manager.network_plugins()] == ["calico"]
    assert [r.provider.name for r in manager.storage_drivers()] == [
        "kubetrio.io/local",
        "rancher.io/local-path",
    ]
