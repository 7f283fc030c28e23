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
