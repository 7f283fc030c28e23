"""The built-in node filters of plugins/scheduler."""

from __future__ import annotations

from typing import Any

from kubetrio_scheduler.node_filters import NodeName, NodeUnschedulable


def node(name: str, *, unschedulable: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"unschedulable": unschedulable}}


def test_node_name_keeps_only_the_named_node() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n2"}}
    assert NodeName().filter(pod, node("n1")) == "node(s) didn't match the requested node name"
    assert NodeName().filter(pod, node("n2")) is None
    assert NodeName().filter({"metadata": {"name": "q"}, "spec": {}}, node("n1")) is None


def test_cordoned_node_refuses_pods_unless_tolerated() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {}}
    assert (
        NodeUnschedulable().filter(pod, node("n1", unschedulable=True))
        == "node(s) were unschedulable"
    )
    assert NodeUnschedulable().filter(pod, node("n1")) is None
    tolerant = {
        "spec": {
            "tolerations": [
                {
                    "key": "node.kubernetes.io/unschedulable",
                    "operator": "Exists",
                    "effect": "NoSchedule",
                }
            ]
        }
    }
    assert NodeUnschedulable().filter(tolerant, node("n1", unschedulable=True)) is None
    everything = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    assert NodeUnschedulable().filter(everything, node("n1", unschedulable=True)) is None
    wrong_effect = {
        "spec": {
            "tolerations": [
                {
                    "key": "node.kubernetes.io/unschedulable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                }
            ]
        }
    }
    assert NodeUnschedulable().filter(wrong_effect, node("n1", unschedulable=True)) is not None
