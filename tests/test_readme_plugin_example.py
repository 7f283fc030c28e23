"""The plugin example in README.md runs as written."""

from __future__ import annotations

import re
import types
from pathlib import Path

from kubetrio.plugins import PluginManager

README = Path(__file__).parents[1] / "README.md"


def readme_example() -> str:
    match = re.search(r"<!-- plugin-example -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README.md lost its plugin example (marked <!-- plugin-example -->)"
    return match.group(1)


def test_readme_plugin_example_filters_nodes() -> None:
    module = types.ModuleType("kubetrio_zone_guard")
    exec(compile(readme_example(), "README.md", "exec"), module.__dict__)
    manager = PluginManager()
    manager.register(module, name="zone_guard")
    manager.check()
    [registered] = [r for r in manager.scheduler_plugins() if r.plugin == "zone_guard"]
    guard = registered.provider
    pod = {"metadata": {"name": "p", "labels": {"zone": "a"}}}
    node_a = {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "a"}}}
    node_b = {"metadata": {"name": "n2", "labels": {"topology.kubernetes.io/zone": "b"}}}
    assert guard.filter(pod, node_a) is None  # type: ignore[attr-defined]
    assert guard.filter(pod, node_b) == "node(s) not in zone a"  # type: ignore[attr-defined]
    assert guard.filter({"metadata": {"name": "q"}}, node_b) is None  # type: ignore[attr-defined]


def test_readme_plugin_example_takes_part_in_a_scheduling_cycle() -> None:
    from kubetrio.scheduler import FitError, Framework, SchedulerCache, pod_info

    module = types.ModuleType("kubetrio_zone_guard")
    exec(compile(readme_example(), "README.md", "exec"), module.__dict__)
    manager = PluginManager()
    manager.register(module, name="zone_guard")
    framework = Framework([r.provider for r in manager.scheduler_plugins()])
    cache = SchedulerCache()
    for name, zone in (("n1", "a"), ("n2", "b"), ("n3", "b")):
        labels = {"topology.kubernetes.io/zone": zone}
        cache.set_node({"metadata": {"name": name, "labels": labels}, "status": {}})
    pod = {"metadata": {"name": "p", "namespace": "default", "labels": {"zone": "a"}}, "spec": {}}
    node, _ = framework.schedule(pod_info(pod), cache)
    assert node.name == "n1"
    lost = {"metadata": {"name": "q", "namespace": "default", "labels": {"zone": "c"}}, "spec": {}}
    try:
        framework.schedule(pod_info(lost), cache)
    except FitError as error:
        assert str(error).startswith("0/3 nodes are available: 3 node(s) not in zone c.")
    else:
        raise AssertionError("a pod of zone c found a node")


def test_readme_options_example_declares_an_option_and_keeps_state_per_manager() -> None:
    """The README's plugin with an option: its option is declared for server and up,
    and two plugin managers configured differently admit by different labels."""
    from kubetrio.providers import AdmissionRequest, UserInfo

    match = re.search(
        r"<!-- plugin-options-example -->\s*```python\n(.*?)```", README.read_text(), re.S
    )
    assert match, "README.md lost its plugin options example"
    module = types.ModuleType("kubetrio_team_label")
    exec(compile(match.group(1), "README.md", "exec"), module.__dict__)
    managers = []
    for label in ("owner", "squad"):
        manager = PluginManager()
        manager.register(module.__kubetrio_plugin__(), name="team_label")
        manager.check()
        [option] = manager.options()
        assert (option.name, option.section, option.key) == (
            "required-label",
            "team_label",
            "label",
        )
        assert option.commands == ("server", "up")
        manager.configure(config={"team_label": {"label": label}})
        managers.append(manager)
    pod = {"metadata": {"name": "p", "labels": {"owner": "me"}}}
    request = AdmissionRequest(
        operation="CREATE",
        user=UserInfo(name="u"),
        api_group="",
        api_version="v1",
        kind="Pod",
        resource="pods",
        object=pod,
    )
    assert managers[0].admission_validate(request=request) == []
    assert managers[1].admission_validate(request=request) == ["pods must carry a 'squad' label"]
