"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch."""

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetrio.api.patch import (
    JSONPatchError,
    JSONPatchTestFailed,
    PatchError,
    StrategicMergePatchError,
    apply_merge,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)

# ---- RFC 7386 appendix A examples ---------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_rfc7386_examples(target: Any, patch: Any, result: Any) -> None:
    before = copy.deepcopy(target)
    assert json_merge_patch(target, patch) == result
    assert target == before


def test_kubectl_scale_merge_patch() -> None:
    scale = {"kind": "Scale", "spec": {"replicas": 1}, "status": {"replicas": 1}}
    out = json_merge_patch(scale, {"spec": {"replicas": 3}})
    assert out["spec"] == {"replicas": 3} and out["status"] == {"replicas": 1}


# ---- RFC 6902 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "ops", "result"),
    [
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/baz", "value": "qux"}],
            {"foo": "bar", "baz": "qux"},
        ),
        (
            {"foo": ["bar", "baz"]},
            [{"op": "add", "path": "/foo/1", "value": "qux"}],
            {"foo": ["bar", "qux", "baz"]},
        ),
        ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
        (
            {"foo": ["bar", "qux", "baz"]},
            [{"op": "remove", "path": "/foo/1"}],
            {"foo": ["bar", "baz"]},
        ),
        (
            {"baz": "qux", "foo": "bar"},
            [{"op": "replace", "path": "/baz", "value": "boo"}],
            {"baz": "boo", "foo": "bar"},
        ),
        (
            {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
            [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
            {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        ),
        (
            {"foo": ["all", "grass", "cows", "eat"]},
            [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
            {"foo": ["all", "cows", "eat", "grass"]},
        ),
        (
            {"foo": ["bar"]},
            [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
            {"foo": ["bar", ["abc", "def"]]},
        ),
        ({"foo": 1}, [{"op": "copy", "from": "/foo", "path": "/bar"}], {"foo": 1, "bar": 1}),
        (
            {"a/b": 1, "m~n": 2},
            [{"op": "replace", "path": "/a~1b", "value": 3}, {"op": "remove", "path": "/m~0n"}],
            {"a/b": 3},
        ),
        ({"foo": 1}, [{"op": "replace", "path": "", "value": [1]}], [1]),
        (
            {"baz": "qux", "foo": ["a", 2, "c"]},
            [
                {"op": "test", "path": "/baz", "value": "qux"},
                {"op": "test", "path": "/foo/1", "value": 2},
            ],
            {"baz": "qux", "foo": ["a", 2, "c"]},
        ),
        ({"": 1}, [{"op": "test", "path": "/", "value": 1}], {"": 1}),
        ({"n": 1}, [{"op": "test", "path": "/n", "value": 1.0}], {"n": 1}),
    ],
)
def test_rfc6902(doc: Any, ops: list[Any], result: Any) -> None:
    before = copy.deepcopy(doc)
    assert json_patch(doc, ops) == result
    assert doc == before


@pytest.mark.parametrize(
    ("doc", "ops", "fragment"),
    [
        ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "does not exist"),
        ({"foo": "bar"}, [{"op": "remove", "path": "/nope"}], "does not exist"),
        ({"foo": "bar"}, [{"op": "replace", "path": "/nope", "value": 1}], "does not exist"),
        ({"foo": [1]}, [{"op": "add", "path": "/foo/5", "value": 1}], "out of bounds"),
        ({"foo": [1]}, [{"op": "add", "path": "/foo/01", "value": 1}], "not a valid array index"),
        ({"foo": [1]}, [{"op": "remove", "path": "/foo/-"}], "not a valid array index"),
        ({}, [{"op": "add", "path": "a", "value": 1}], "must be empty or start with"),
        ({}, [{"op": "add", "path": "/a~2", "value": 1}], "'~' escape"),
        ({}, [{"op": "jump", "path": "/a"}], "unknown operation"),
        ({}, [{"op": "add", "path": "/a"}], "missing 'value'"),
        ({}, [{"op": "add", "value": 1}], "missing 'path'"),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}], "into itself"),
        ({}, {"op": "add"}, "array of operations"),
        ({}, ["x"], "must be an object"),
    ],
)
def test_rfc6902_errors(doc: Any, ops: Any, fragment: str) -> None:
    with pytest.raises(JSONPatchError, match=fragment):
        json_patch(doc, ops)


def test_test_op_failures() -> None:
    with pytest.raises(JSONPatchTestFailed, match="operation 1: testing value /n failed"):
        json_patch(
            {"n": 1},
            [{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/n", "value": True}],
        )
    with pytest.raises(JSONPatchTestFailed):
        json_patch({"a": [1, 2]}, [{"op": "test", "path": "/a", "value": [2, 1]}])


def test_atomic_on_failure() -> None:
    doc = {"a": 1}
    with pytest.raises(JSONPatchError):
        json_patch(doc, [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/c"}])
    assert doc == {"a": 1}


def test_rollout_undo_json_patch() -> None:
    deploy = {"metadata": {"annotations": {"a": "1"}}, "spec": {"template": {"x": 1}}}
    ops = [
        {"op": "replace", "path": "/spec/template", "value": {"x": 2}},
        {"op": "replace", "path": "/metadata/annotations", "value": {"b": "2"}},
    ]
    assert json_patch(deploy, ops) == {
        "metadata": {"annotations": {"b": "2"}},
        "spec": {"template": {"x": 2}},
    }


# ---- strategic merge patch ---------------------------------------------------------------

POD = "io.k8s.api.core.v1.Pod"
DEPLOY = "io.k8s.api.apps.v1.Deployment"
NODE = "io.k8s.api.core.v1.Node"


def _pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "labels": {"app": "web"}},
        "spec": {"containers": list(containers)},
    }


def test_containers_merge_by_name() -> None:
    orig = _pod(
        {"name": "app", "image": "nginx:1", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "envoy"},
    )
    patch = {
        "spec": {
            "containers": [{"name": "app", "image": "nginx:2"}, {"name": "new", "image": "busybox"}]
        }
    }
    out = strategic_merge_patch(orig, patch, POD)
    assert out["spec"]["containers"] == [
        {"name": "app", "image": "nginx:2", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "envoy"},
        {"name": "new", "image": "busybox"},
    ]
    assert orig["spec"]["containers"][0]["image"] == "nginx:1"  # input untouched
    # the same patch as a JSON merge patch replaces the whole list
    assert len(json_merge_patch(orig, patch)["spec"]["containers"]) == 2


def test_nested_merge_in_deployment_template() -> None:
    orig = {
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "a",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        }
                    ]
                }
            },
        }
    }
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                        }
                    ]
                }
            }
        }
    }
    out = strategic_merge_patch(orig, patch, DEPLOY)
    env = out["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert out["spec"]["replicas"] == 1


def test_delete_directive_in_list() -> None:
    orig = _pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    out = strategic_merge_patch(
        orig, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}, POD
    )
    assert out["spec"]["containers"] == [{"name": "b", "image": "y"}]


def test_replace_directive_in_list_and_map() -> None:
    orig = _pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    out = strategic_merge_patch(
        orig, {"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}}, POD
    )
    assert out["spec"]["containers"] == [{"name": "c", "image": "z"}]
    out = strategic_merge_patch(
        orig, {"metadata": {"labels": {"x": "1", "$patch": "replace"}}}, POD
    )
    assert out["metadata"]["labels"] == {"x": "1"}
    out = strategic_merge_patch(orig, {"metadata": {"labels": {"$patch": "delete"}}}, POD)
    assert "labels" not in out["metadata"]


def test_labels_merge_and_null_deletes() -> None:
    orig = {"metadata": {"labels": {"a": "1", "b": "2"}}}
    out = strategic_merge_patch(orig, {"metadata": {"labels": {"a": None, "c": "3"}}}, POD)
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}


def test_lists_without_merge_key_are_replaced() -> None:
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}
    out = strategic_merge_patch(
        node, {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}, NODE
    )
    assert out["spec"]["taints"] == [{"key": "b", "effect": "NoExecute"}]
    out = strategic_merge_patch(node, {"spec": {"unschedulable": True}}, NODE)
    assert out["spec"] == {"taints": node["spec"]["taints"], "unschedulable": True}


def test_primitive_merge_list_and_delete_from_primitive_list() -> None:
    orig = {"metadata": {"finalizers": ["a", "b"]}}
    out = strategic_merge_patch(orig, {"metadata": {"finalizers": ["b", "c"]}}, POD)
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]
    out = strategic_merge_patch(
        orig, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD
    )
    assert out["metadata"]["finalizers"] == ["b"]


def test_retain_keys_for_deployment_strategy() -> None:
    orig = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge_patch(orig, patch, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_set_element_order_is_tolerated_and_applied() -> None:
    orig = _pod({"name": "a"}, {"name": "b"})
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "i"}],
        }
    }
    out = strategic_merge_patch(orig, patch, POD)
    assert out["spec"]["containers"] == [{"name": "b"}, {"name": "a", "image": "i"}]


def test_ports_merge_by_container_port_and_new_values_are_cleaned() -> None:
    orig = {"spec": {"ports": [{"port": 80, "name": "http"}]}}
    patch = {
        "spec": {
            "ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "name": None}],
            "selector": {"app": "x", "$patch": "merge"},
        }
    }
    out = strategic_merge_patch(orig, patch, "io.k8s.api.core.v1.Service")
    assert out["spec"]["ports"] == [{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443}]
    assert out["spec"]["selector"] == {"app": "x"}


def test_resources_map_values_merge() -> None:
    orig = _pod({"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})
    patch = {"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "2"}}}]}}
    out = strategic_merge_patch(orig, patch, POD)
    assert out["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}


def test_smp_errors() -> None:
    with pytest.raises(StrategicMergePatchError, match="merge key 'name'"):
        strategic_merge_patch(_pod({"name": "a"}), {"spec": {"containers": [{"image": "x"}]}}, POD)
    with pytest.raises(StrategicMergePatchError, match="unknown \\$patch directive"):
        strategic_merge_patch({}, {"metadata": {"$patch": "explode"}}, POD)
    with pytest.raises(StrategicMergePatchError, match="unknown \\$patch directive"):
        strategic_merge_patch(_pod(), {"metadata": {"$patch": "explode"}}, POD)
    with pytest.raises(StrategicMergePatchError):
        strategic_merge_patch({}, [], POD)  # type: ignore[arg-type]


def test_unknown_directives_are_ignored() -> None:
    out = strategic_merge_patch(_pod(), {"spec": {"$newDirective/containers": [1]}}, POD)
    assert out == _pod()


def test_unknown_definition_behaves_like_merge_patch() -> None:
    orig = {"spec": {"items": [1, 2], "m": {"a": 1}}}
    out = strategic_merge_patch(orig, {"spec": {"items": [3], "m": {"b": 2}}}, None)
    assert out == {"spec": {"items": [3], "m": {"a": 1, "b": 2}}}


# ---- properties ------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)
_objects = st.dictionaries(st.text(max_size=4), _json, max_size=5)


@given(_objects, _objects)
def test_merge_patch_is_idempotent(target: dict[str, Any], patch: dict[str, Any]) -> None:
    once = json_merge_patch(target, patch)
    assert json_merge_patch(once, patch) == once


@given(_objects, _json)
def test_json_patch_add_then_remove_round_trips(doc: dict[str, Any], value: Any) -> None:
    key = "/" + "new~1key"
    if "new/key" in doc:
        return
    added = json_patch(doc, [{"op": "add", "path": key, "value": value}])
    assert added["new/key"] == value
    assert json_patch(added, [{"op": "remove", "path": key}]) == doc
    assert json_patch(doc, [{"op": "test", "path": "", "value": doc}]) == doc


_keys = st.text(alphabet="abc", max_size=3)
_list_free = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.dictionaries(_keys, children, max_size=3),
    max_leaves=12,
)


@given(
    st.dictionaries(_keys, _list_free, max_size=4), st.dictionaries(_keys, _list_free, max_size=4)
)
def test_smp_without_lists_equals_merge_patch(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert strategic_merge_patch(target, patch, POD) == json_merge_patch(target, patch)


_directive_keys = st.sampled_from(
    [
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/args",
        "name",
        "containers",
        "args",
        "spec",
        "metadata",
        "finalizers",
        "env",
        "ports",
        "image",
    ]
)
_wild = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(["replace", "delete", "merge", "x"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_directive_keys, children, max_size=4)
    ),
    max_leaves=25,
)


@given(_wild, _wild)
def test_patches_raise_only_patch_errors(original: Any, patch: Any) -> None:
    for apply in (
        lambda: strategic_merge_patch(original if isinstance(original, dict) else {}, patch, POD),
        lambda: strategic_merge_patch({"spec": original}, {"spec": patch}, POD),
        lambda: json_merge_patch(original, patch),
        lambda: json_patch(original, patch),
    ):
        with contextlib.suppress(PatchError):
            apply()


def test_deep_nesting_is_a_patch_error() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(PatchError):
        json_merge_patch({}, deep)
    with pytest.raises(PatchError):
        strategic_merge_patch({}, deep, POD)
    with pytest.raises(PatchError):
        json_patch(deep, [])


# ---- server-side apply merge ---------------------------------------------------------------

SERVICE = "io.k8s.api.core.v1.Service"


def test_apply_merges_associative_lists_by_all_keys() -> None:
    live: dict[str, Any] = {
        "spec": {
            "ports": [
                {"port": 53, "protocol": "UDP", "name": "dns"},
                {"port": 53, "protocol": "TCP", "name": "dns-tcp"},
            ],
            "selector": {"app": "dns", "tier": "x"},
        }
    }
    applied = {
        "spec": {
            "ports": [{"port": 53, "protocol": "TCP", "targetPort": 5353}],
            "selector": {"app": "dns2"},
        }
    }
    out = apply_merge(live, applied, SERVICE)
    assert out["spec"]["ports"] == [
        {"port": 53, "protocol": "UDP", "name": "dns"},
        {"port": 53, "protocol": "TCP", "name": "dns-tcp", "targetPort": 5353},
    ]
    # Service.spec.selector is an atomic map: replaced whole
    assert out["spec"]["selector"] == {"app": "dns2"}


def test_apply_containers_sets_and_atomic_structs() -> None:
    live: dict[str, Any] = {
        "metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
        "spec": {
            "selector": {"matchLabels": {"app": "web", "old": "y"}},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "a:1", "args": ["--x"]},
                        {"name": "side", "image": "s"},
                    ],
                    "tolerations": [{"key": "k"}],
                }
            },
        },
    }
    applied = {
        "metadata": {"labels": {"b": "2"}, "finalizers": ["y", "x"]},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "spec": {
                    "containers": [{"name": "app", "image": "a:2", "args": ["--y"]}],
                    "tolerations": [{"key": "j"}],
                }
            },
        },
    }
    out = apply_merge(live, applied, DEPLOY)
    assert out["metadata"] == {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]}
    assert out["spec"]["selector"] == {"matchLabels": {"app": "web"}}  # LabelSelector is atomic
    pod = out["spec"]["template"]["spec"]
    assert pod["containers"] == [
        {"name": "app", "image": "a:2", "args": ["--y"]},
        {"name": "side", "image": "s"},
    ]
    assert pod["tolerations"] == [{"key": "j"}]  # atomic list
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "a:1"


def test_apply_matches_defaulted_protocol() -> None:
    live = {"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}}
    out = apply_merge(live, {"spec": {"ports": [{"port": 80, "name": "http"}]}}, SERVICE)
    assert out["spec"]["ports"] == [
        {"port": 80, "protocol": "TCP", "targetPort": 8080, "name": "http"}
    ]


def test_apply_does_not_interpret_directives() -> None:
    out = apply_merge({"metadata": {}}, {"metadata": {"labels": {"$patch": "replace"}}}, POD)
    assert out["metadata"]["labels"] == {"$patch": "replace"}
    with pytest.raises(PatchError):
        apply_merge({}, [], POD)  # type: ignore[arg-type]


@given(_wild, _wild)
def test_apply_raises_only_patch_errors(live: Any, applied: Any) -> None:
    with contextlib.suppress(PatchError):
        apply_merge(live if isinstance(live, dict) else {}, applied, POD)
