"""Field ownership (managedFields) and server-side apply, against upstream's semantics."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetrio.api import managedfields as mf

CONFIGMAP = mf.builtin_type("io.k8s.api.core.v1.ConfigMap")
DEPLOYMENT = mf.builtin_type("io.k8s.api.apps.v1.Deployment")
NOW = "2026-01-01T00:00:00Z"


def configmap(data: dict[str, str], name: str = "cm") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def deployment(containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
        },
    }


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"]["managedFields"]}


# ---- the wire encoding ------------------------------------------------------------------

# As kube-apiserver writes it for `kubectl create deployment` (ordering included).
UPSTREAM_FIELDS = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:progressDeadlineSeconds": {},
        "f:selector": {},
        "f:template": {
            "f:spec": {
                "f:containers": {
                    'k:{"name":"nginx"}': {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {
                            'k:{"containerPort":80,"protocol":"TCP"}': {
                                ".": {},
                                "f:containerPort": {},
                            },
                            'k:{"containerPort":443,"protocol":"TCP"}': {},
                        },
                    }
                },
            }
        },
    },
}


def test_fields_v1_round_trips_in_upstream_order() -> None:
    decoded = mf.decode_fields(UPSTREAM_FIELDS)
    encoded = mf.encode_fields(decoded)
    assert json.dumps(encoded) == json.dumps(UPSTREAM_FIELDS)


def test_keyed_elements_order_by_value_not_text() -> None:
    # 9 < 10 as numbers although "10" < "9" as text (structured-merge-diff's order).
    fields: dict[str, Any] = {'k:{"port":10}': {}, 'k:{"port":9}': {}}
    assert list(mf.encode_fields(mf.decode_fields(fields))) == ['k:{"port":9}', 'k:{"port":10}']


def test_other_json_spellings_of_keys_are_the_same_element() -> None:
    a = mf.decode_fields({'k:{ "name" : "x" }': {}})
    b = mf.decode_fields({'k:{"name":"x"}': {}})
    assert a == b


def test_malformed_fields_are_refused() -> None:
    with pytest.raises(ValueError):
        mf.decode_fields({"spec": {}})
    with pytest.raises(ValueError):
        mf.decode_managed_fields([{"manager": "m", "operation": "Patch", "apiVersion": "v1"}])


def test_field_set_of_a_deployment() -> None:
    obj = deployment([{"name": "app", "image": "busybox", "ports": [{"containerPort": 80}]}])
    fields = mf.encode_fields(mf.field_set(obj, DEPLOYMENT))
    containers = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    # selector is an atomic struct; the ports key is completed with its default protocol.
    assert fields["f:spec"]["f:selector"] == {}
    assert containers == {
        'k:{"name":"app"}': {
            ".": {},
            "f:image": {},
            "f:name": {},
            "f:ports": {
                'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}
            },
        }
    }
    assert fields["f:metadata"] == {"f:name": {}}


def test_conflict_paths_print_as_upstream() -> None:
    path = ("f:spec", "f:containers", 'k:{"name":"app"}', "f:image")
    assert mf.path_string(path) == '.spec.containers[name="app"].image'
    assert mf.path_string(("f:finalizers", 'v:"x"')) == '.finalizers[="x"]'


# ---- updates --------------------------------------------------------------------------


def test_create_records_an_update_entry_without_server_metadata() -> None:
    obj = configmap({"key1": "a"})
    obj["metadata"].update(uid="u", creationTimestamp=NOW, resourceVersion="3")
    mf.record_update(None, obj, CONFIGMAP, manager="kubectl-create", api_version="v1", now=NOW)
    [entry] = obj["metadata"]["managedFields"]
    assert entry == {
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "v1",
        "time": NOW,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {".": {}, "f:key1": {}}},
    }


def test_updates_move_ownership_and_consecutive_updates_merge() -> None:
    live = configmap({"a": "1", "b": "2"})
    mf.record_update(None, live, CONFIGMAP, manager="one", api_version="v1", now=NOW)
    new = copy.deepcopy(live)
    new["data"]["a"] = "changed"
    mf.record_update(live, new, CONFIGMAP, manager="two", api_version="v1", now=NOW)
    assert entries(new) == {
        ("one", "Update"): {"f:data": {".": {}, "f:b": {}}},
        ("two", "Update"): {"f:data": {"f:a": {}}},
    }
    newer = copy.deepcopy(new)
    newer["data"]["c"] = "3"
    mf.record_update(new, newer, CONFIGMAP, manager="two", api_version="v1", now=NOW)
    assert len(newer["metadata"]["managedFields"]) == 2  # one entry per manager
    assert entries(newer)[("two", "Update")] == {"f:data": {"f:a": {}, "f:c": {}}}
    gone = copy.deepcopy(newer)
    del gone["data"]["b"]
    mf.record_update(newer, gone, CONFIGMAP, manager="two", api_version="v1", now=NOW)
    # "one" lost b (removed) and, owning nothing but the map itself, keeps only that.
    assert entries(gone)[("one", "Update")] == {"f:data": {}}


@pytest.mark.parametrize("reset", [[], [{}]])
def test_a_request_may_reset_managed_fields(reset: list[Any]) -> None:
    live = configmap({"a": "1"})
    mf.record_update(None, live, CONFIGMAP, manager="one", api_version="v1", now=NOW)
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = reset
    mf.record_update(live, new, CONFIGMAP, manager="two", api_version="v1", now=NOW)
    assert "managedFields" not in new["metadata"]


def test_a_request_without_managed_fields_keeps_them() -> None:
    live = configmap({"a": "1"})
    mf.record_update(None, live, CONFIGMAP, manager="one", api_version="v1", now=NOW)
    new = copy.deepcopy(live)
    del new["metadata"]["managedFields"]
    new["data"]["b"] = "2"
    mf.record_update(live, new, CONFIGMAP, manager="two", api_version="v1", now=NOW)
    assert set(entries(new)) == {("one", "Update"), ("two", "Update")}


def test_status_writes_record_their_subresource() -> None:
    live = deployment([{"name": "app", "image": "x"}])
    mf.record_update(None, live, DEPLOYMENT, manager="kubectl", api_version="apps/v1", now=NOW)
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 1}
    mf.record_update(
        live, new, DEPLOYMENT, manager="ctrl", api_version="apps/v1", now=NOW, subresource="status"
    )
    status_entry = [e for e in new["metadata"]["managedFields"] if e["manager"] == "ctrl"]
    assert status_entry[0]["subresource"] == "status"
    # status is a (non-pointer) struct: owning its fields does not own the struct.
    assert status_entry[0]["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_update_managers_are_capped_into_ancient_changes() -> None:
    obj = configmap({})
    for i in range(12):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        mf.record_update(
            obj, new, CONFIGMAP, manager=f"m{i}", api_version="v1", now=f"2026-01-01T00:00:{i:02}Z"
        )
        obj = new
    found = entries(obj)
    assert len(found) == 10
    assert found[("ancient-changes", "Update")] == {"f:data": {"f:k0": {}, "f:k1": {}, "f:k2": {}}}
    assert ("m11", "Update") in found and ("m0", "Update") not in found


# ---- apply ------------------------------------------------------------------------------


def apply(
    live: dict[str, Any] | None, config: dict[str, Any], manager: str = "kubectl", **kw: Any
) -> dict[str, Any]:
    t = CONFIGMAP if config["kind"] == "ConfigMap" else DEPLOYMENT
    return mf.apply(
        live, config, t, manager=manager, api_version=config["apiVersion"], now=NOW, **kw
    )


def test_reapplying_without_a_key_removes_it() -> None:
    """The defect: a re-apply without key1 (same manager) left key1 in place."""
    obj = apply(None, configmap({"key1": "a", "key2": "b"}))
    obj = apply(obj, configmap({"key2": "b"}))
    assert obj["data"] == {"key2": "b"}
    assert entries(obj) == {("kubectl", "Apply"): {"f:data": {"f:key2": {}}}}


def test_fields_another_manager_owns_are_not_removed() -> None:
    obj = apply(None, configmap({"key1": "a"}))
    obj = apply(obj, configmap({"key1": "a"}), manager="other")  # same value: co-owned
    obj = apply(obj, configmap({"key2": "b"}))
    assert obj["data"] == {"key1": "a", "key2": "b"}


def test_conflicts_name_each_field_and_manager_and_force_takes_them() -> None:
    live = configmap({"key1": "a", "key2": "b"})
    mf.record_update(
        None, live, CONFIGMAP, manager="kubectl-client-side-apply", api_version="v1", now=NOW
    )
    with pytest.raises(mf.ConflictError) as caught:
        apply(live, configmap({"key1": "x"}), manager="mine")
    assert str(caught.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
        "using v1: .data.key1"
    )
    with pytest.raises(mf.ConflictError) as caught:
        apply(live, configmap({"key1": "x", "key2": "y"}), manager="mine")
    assert str(caught.value).startswith("Apply failed with 2 conflicts: conflict with ")
    assert caught.value.conflicts == [
        ('"kubectl-client-side-apply" using v1', ".data.key1"),
        ('"kubectl-client-side-apply" using v1', ".data.key2"),
    ]
    forced = apply(live, configmap({"key1": "x"}), manager="mine", force=True)
    assert forced["data"] == {"key1": "x", "key2": "b"}
    assert entries(forced)[("mine", "Apply")] == {"f:data": {"f:key1": {}}}
    assert entries(forced)[("kubectl-client-side-apply", "Update")] == {
        "f:data": {".": {}, "f:key2": {}}
    }


def test_kubectl_takes_over_from_its_client_side_apply() -> None:
    last = configmap({"key1": "a"})
    live = configmap({"key1": "a"})
    live["metadata"]["annotations"] = {mf.LAST_APPLIED: json.dumps(last)}
    mf.record_update(
        None, live, CONFIGMAP, manager="kubectl-client-side-apply", api_version="v1", now=NOW
    )
    obj = apply(live, configmap({"key1": "b"}), manager="kubectl")
    assert obj["data"] == {"key1": "b"}
    assert json.loads(obj["metadata"]["annotations"][mf.LAST_APPLIED])["data"] == {"key1": "b"}
    with pytest.raises(mf.ConflictError):
        apply(live, configmap({"key1": "b"}), manager="someone-else")


def test_a_container_and_an_env_entry_dropped_from_the_config_go() -> None:
    both: list[dict[str, Any]] = [
        {
            "name": "main",
            "image": "a",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        },
        {"name": "side", "image": "b"},
    ]
    obj = apply(None, deployment(both))
    # The server defaults fields nobody applied: they go with their container.
    for container in obj["spec"]["template"]["spec"]["containers"]:
        container["imagePullPolicy"] = "Always"
    one = [{"name": "main", "image": "a", "env": [{"name": "A", "value": "1"}]}]
    obj = apply(obj, deployment(one))
    assert obj["spec"]["template"]["spec"]["containers"] == [
        {
            "name": "main",
            "image": "a",
            "env": [{"name": "A", "value": "1"}],
            "imagePullPolicy": "Always",
        }
    ]


def test_list_items_another_manager_added_stay() -> None:
    obj = apply(None, deployment([{"name": "main", "image": "a"}]))
    new = copy.deepcopy(obj)
    new["spec"]["template"]["spec"]["containers"].append({"name": "injected", "image": "i"})
    mf.record_update(obj, new, DEPLOYMENT, manager="webhook", api_version="apps/v1", now=NOW)
    obj = apply(new, deployment([{"name": "main", "image": "b"}]))
    names = [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]
    assert names == ["main", "injected"]


def test_status_is_not_owned_through_the_main_resource() -> None:
    config = deployment([{"name": "main", "image": "a"}])
    config["status"] = {"replicas": 3}
    obj = mf.apply(
        None,
        config,
        DEPLOYMENT,
        manager="kubectl",
        api_version="apps/v1",
        now=NOW,
        ignored={"f:status": {".": {}}},
    )
    assert "f:status" not in entries(obj)[("kubectl", "Apply")]


def test_crd_list_types_come_from_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                        },
                    },
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
    }
    t = mf.crd_type(schema)

    def widget(spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "ex.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": spec,
        }

    first = widget({"ports": [{"name": "a", "port": 1}], "tags": ["x"]})
    obj = mf.apply(None, first, t, manager="m1", api_version="ex.com/v1", now=NOW)
    second = widget({"ports": [{"name": "b", "port": 2}], "tags": ["y"]})
    obj = mf.apply(obj, second, t, manager="m2", api_version="ex.com/v1", now=NOW, force=True)
    # ports merge by name (granular), tags is atomic: replaced and taken over.
    assert obj["spec"]["ports"] == [{"name": "a", "port": 1}, {"name": "b", "port": 2}]
    assert obj["spec"]["tags"] == ["y"]
    assert "f:tags" not in entries(obj)[("m1", "Apply")]["f:spec"]


# ---- properties -----------------------------------------------------------------------

keys = st.text("abcdefgh", min_size=1, max_size=3)
data = st.dictionaries(keys, st.text("xyz", max_size=2), max_size=6)


@settings(max_examples=150, deadline=None)
@given(data, data)
def test_a_single_applier_gets_exactly_its_configuration(
    first: dict[str, str], second: dict[str, str]
) -> None:
    obj = apply(None, configmap(first))
    obj = apply(obj, configmap(second))
    assert obj.get("data", {}) == second


@settings(max_examples=150, deadline=None)
@given(data, data, data)
def test_apply_is_idempotent(
    first: dict[str, str], other: dict[str, str], again: dict[str, str]
) -> None:
    obj = apply(None, configmap(first))
    obj = apply(obj, configmap(other), manager="other", force=True)
    once = apply(obj, configmap(again), force=True)
    twice = apply(once, configmap(again), force=True)
    assert twice == once


@settings(max_examples=150, deadline=None)
@given(data, data, data)
def test_other_managers_keep_what_they_own(
    mine: dict[str, str], theirs: dict[str, str], later: dict[str, str]
) -> None:
    obj = apply(None, configmap(theirs), manager="theirs")
    obj = apply(obj, configmap(mine), force=True)
    obj = apply(obj, configmap(later), force=True)
    kept = {k: v for k, v in theirs.items() if k not in mine and k not in later}
    for key, value in kept.items():
        assert obj["data"][key] == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text("ab", max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(keys, json_values, max_size=4),
    st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["a", "b", "c"])},
            optional={"image": st.text("xy", max_size=2), "args": st.lists(keys, max_size=2)},
        ),
        max_size=4,
    ),
)
def test_the_create_fast_path_records_what_the_general_path_does(
    labels: dict[str, Any], containers: list[dict[str, Any]]
) -> None:
    obj = deployment(containers)
    obj["metadata"]["annotations"] = {"note": json.dumps(labels)}
    obj["spec"]["template"]["spec"]["nodeSelector"] = labels
    obj["spec"]["template"]["metadata"]["labels"] = labels
    fast = copy.deepcopy(obj)
    mf.record_update(None, fast, DEPLOYMENT, manager="m", api_version="apps/v1", now=NOW)
    general = copy.deepcopy(obj)
    # An empty-but-present live object takes the general compare path.
    mf.record_update(
        {"metadata": {}}, general, DEPLOYMENT, manager="m", api_version="apps/v1", now=NOW
    )
    assert json.dumps(fast["metadata"].get("managedFields")) == json.dumps(
        general["metadata"].get("managedFields")
    )


def paths(node: mf.FieldSet) -> set[tuple[str, ...]]:
    return set(mf._paths(node))


field_paths = st.lists(
    st.lists(st.sampled_from(["f:a", "f:b", 'k:{"n":1}', 'v:"x"']), min_size=1, max_size=3).map(
        tuple
    ),
    max_size=8,
)


def build(path_list: list[tuple[str, ...]]) -> mf.FieldSet:
    node: mf.FieldSet = {}
    for path in path_list:
        mf._insert(node, path)
    return node


@settings(max_examples=200, deadline=None)
@given(field_paths, field_paths)
def test_set_operations_are_set_operations(
    a_paths: list[tuple[str, ...]], b_paths: list[tuple[str, ...]]
) -> None:
    a, b = build(a_paths), build(b_paths)
    assert paths(a) == set(a_paths)
    assert paths(mf._union(a, b)) == set(a_paths) | set(b_paths)
    assert paths(mf._intersection(a, b)) == set(a_paths) & set(b_paths)
    assert paths(mf._difference(a, b)) == set(a_paths) - set(b_paths)
    assert paths(mf.decode_fields(mf.encode_fields(a))) == set(a_paths)
    under_b = {p for p in a_paths if any(p[: len(q)] == q for q in b_paths)}
    assert paths(mf._recursive_difference(a, b)) == set(a_paths) - under_b


@settings(max_examples=150, deadline=None)
@given(data, data)
def test_compare_finds_what_changed(before: dict[str, str], after: dict[str, str]) -> None:
    diff = mf.compare(configmap(before), configmap(after), CONFIGMAP)

    def data_keys(node: mf.FieldSet) -> set[str]:
        return {p[1][2:] for p in paths(node) if len(p) == 2 and p[0] == "f:data"}

    assert data_keys(diff.modified) == {
        k for k in before.keys() & after.keys() if before[k] != after[k]
    }
    assert data_keys(diff.added) == after.keys() - before.keys()
    assert data_keys(diff.removed) == before.keys() - after.keys()


writes = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans(), data),  # manager, apply?, data
    min_size=1,
    max_size=6,
)


def run_writes(steps: list[tuple[str, bool, dict[str, str]]]) -> list[Any]:
    obj: dict[str, Any] | None = None
    seen = []
    for manager, is_apply, values in steps:
        if is_apply or obj is None:
            obj = apply(obj, configmap(values), manager=manager, force=True)
        else:
            new = copy.deepcopy(obj)
            new["data"] = values
            mf.record_update(obj, new, CONFIGMAP, manager=manager, api_version="v1", now=NOW)
            obj = new
        seen.append(copy.deepcopy(obj))
    return seen


@settings(max_examples=150, deadline=None)
@given(writes)
def test_stored_sets_kept_in_wire_form_change_nothing(
    steps: list[tuple[str, bool, dict[str, str]]],
) -> None:
    from unittest import mock

    fast = run_writes(steps)
    decode = mf.decode_managed_fields
    with mock.patch.object(mf, "decode_managed_fields", lambda e, trusted=False: decode(e)):
        slow = run_writes(steps)
    assert json.dumps(fast) == json.dumps(slow)
